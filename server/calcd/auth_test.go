package calcd_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	calculatorv1 "github.com/calcrpc/calc/gen/calculator/v1"
	"github.com/calcrpc/calc/server/auth"
	"github.com/calcrpc/calc/server/calcd"
	"github.com/calcrpc/calc/server/calcd/calcdtest"
)

// TestAuthOnEveryTransport: one policy holds on both transports: a call
// without a token is UNAUTHENTICATED, a token's principal may call its
// methods and gets PERMISSION_DENIED for others, and health stays open.
func TestAuthOnEveryTransport(t *testing.T) {
	hash := func(s string) string { d := sha256.Sum256([]byte(s)); return hex.EncodeToString(d[:]) }
	path := filepath.Join(t.TempDir(), "auth.json")
	policy := `{"principals": [
		{"name": "calc", "token_sha256": "` + hash("tok-calc") + `", "methods": ["/calculator.v1.CalculatorService/Calculate"]}
	]}`
	if err := os.WriteFile(path, []byte(policy), 0o600); err != nil {
		t.Fatal(err)
	}
	a, err := auth.New(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := calcdtest.Start(t, calcd.Config{Auth: a})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	withToken := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer tok-calc")
	for tr, cc := range srv.Conns(t) {
		c := calculatorv1.NewCalculatorServiceClient(cc)
		add := &calculatorv1.CalculateRequest{Operator: calculatorv1.Operator_OPERATOR_ADD, Lhs: 2, Rhs: 3}
		if _, err := c.Calculate(ctx, add); status.Code(err) != codes.Unauthenticated {
			t.Errorf("%s: no token: %v, want UNAUTHENTICATED", tr, err)
		}
		if r, err := c.Calculate(withToken, add); err != nil || r.GetResult() != 5 {
			t.Errorf("%s: with the token: %v %v", tr, r, err)
		}
		if _, err := c.Evaluate(withToken, &calculatorv1.EvaluateRequest{Expression: "1"}); status.Code(err) != codes.PermissionDenied {
			t.Errorf("%s: a method the principal may not call: %v, want PERMISSION_DENIED", tr, err)
		}
		s, err := c.CalculateStream(ctx)
		if err == nil {
			_, err = s.Recv()
		}
		if status.Code(err) != codes.Unauthenticated {
			t.Errorf("%s: a stream without a token: %v, want UNAUTHENTICATED", tr, err)
		}
		if r, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil || r.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("%s: health without a token: %v %v", tr, r, err)
		}
	}
}
