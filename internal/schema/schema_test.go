package schema_test

import (
	"strings"
	"testing"

	_ "google.golang.org/grpc/health/grpc_health_v1" // linked in, as in calcd
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"

	calculatorv1 "github.com/calcrpc/calc/gen/calculator/v1"
	"github.com/calcrpc/calc/internal/schema"
)

// TestMatchesGeneratedCode: the embedded schema is the one the generated
// Go code was built from (scripts/generate.sh makes both), plus comments.
func TestMatchesGeneratedCode(t *testing.T) {
	r, err := schema.NewResolver()
	if err != nil {
		t.Fatal(err)
	}
	gen := calculatorv1.File_calculator_v1_calculator_proto
	fd, err := r.FindFileByPath(gen.Path())
	if err != nil {
		t.Fatal(err)
	}
	embedded := protodesc.ToFileDescriptorProto(fd)
	if embedded.GetSourceCodeInfo() == nil {
		t.Fatal("the embedded schema has no source info")
	}
	if svc := fd.Services().ByName("CalculatorService"); strings.TrimSpace(fd.SourceLocations().ByDescriptor(svc).LeadingComments) == "" {
		t.Error("CalculatorService has no leading comment in the embedded schema")
	}
	embedded.SourceCodeInfo = nil
	if want := protodesc.ToFileDescriptorProto(gen); !proto.Equal(embedded, want) {
		t.Error("internal/schema/calculator.binpb differs from the generated code's descriptor: run scripts/generate.sh")
	}
	if _, err := r.FindDescriptorByName("grpc.health.v1.Health"); err != nil {
		t.Errorf("health from the linked-in files: %v", err)
	}
}
