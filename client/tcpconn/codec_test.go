package tcpconn_test

import (
	"context"
	"testing"
	"time"

	"github.com/calcrpc/calc/client/tcpconn"
	calculatorv1 "github.com/calcrpc/calc/gen/calculator/v1"
	"github.com/calcrpc/calc/internal/calccodec"
	"github.com/calcrpc/calc/internal/calltest"
	"github.com/calcrpc/calc/server/calcd"
	"github.com/calcrpc/calc/server/calcd/calcdtest"
)

// TestCodec runs the shared conformance cases over a Conn that encodes
// and decodes with calccodec.Codec: its results, codes and details are
// the cases' own, as with protobuf-go.
func TestCodec(t *testing.T) {
	cases, err := calltest.Load("../../testdata/conformance/cases.json")
	if err != nil {
		t.Fatal(err)
	}
	srv := calcdtest.Start(t, calcd.Config{})
	client := calculatorv1.NewCalculatorServiceClient(srv.DialTCP(t, tcpconn.Options{Codec: calccodec.Codec{}}))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, c := range cases {
		if _, err := calltest.Run(ctx, client, c); err != nil {
			t.Errorf("%s: %v", c.Name, err)
		}
	}
}
