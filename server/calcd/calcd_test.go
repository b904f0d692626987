package calcd_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionv1 "google.golang.org/grpc/reflection/grpc_reflection_v1"
	reflectionv1alpha "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/descriptorpb"

	calculatorv1 "github.com/calcrpc/calc/gen/calculator/v1"
	"github.com/calcrpc/calc/server/calcd"
	"github.com/calcrpc/calc/server/calcd/calcdtest"
)

const calculatorService = "calculator.v1.CalculatorService"

// TestHealth: both transports serve grpc.health.v1 from one state:
// SERVING for the server and the calculator, NOT_FOUND for other names,
// and a Watch on each transport sees NOT_SERVING when the drain begins.
func TestHealth(t *testing.T) {
	srv := calcdtest.Start(t, calcd.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	watches := map[string]healthpb.Health_WatchClient{}
	for _, tr := range calcdtest.Transports {
		h := healthpb.NewHealthClient(srv.Conns(t)[tr])
		for _, svc := range []string{"", calculatorService} {
			r, err := h.Check(ctx, &healthpb.HealthCheckRequest{Service: svc})
			if err != nil || r.GetStatus() != healthpb.HealthCheckResponse_SERVING {
				t.Fatalf("%s: Check(%q): %v %v, want SERVING", tr, svc, r, err)
			}
		}
		if _, err := h.Check(ctx, &healthpb.HealthCheckRequest{Service: "no.Such"}); status.Code(err) != codes.NotFound {
			t.Fatalf("%s: Check of an unknown service: %v, want NOT_FOUND", tr, err)
		}
		w, err := h.Watch(ctx, &healthpb.HealthCheckRequest{Service: calculatorService})
		if err != nil {
			t.Fatal(err)
		}
		if r, err := w.Recv(); err != nil || r.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("%s: Watch: %v %v, want SERVING first", tr, r, err)
		}
		watches[tr] = w
	}
	drained := make(chan error, 1)
	go func() {
		sctx, scancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer scancel()
		drained <- srv.Shutdown(sctx) // the watches keep streams open: ended at the deadline
	}()
	for tr, w := range watches {
		if r, err := w.Recv(); err != nil || r.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
			t.Errorf("%s: Watch during the drain: %v %v, want NOT_SERVING", tr, r, err)
		}
	}
	if err := <-drained; err != nil {
		t.Fatal(err)
	}
}

// TestReflection: both transports serve reflection v1 and v1alpha, list
// the same services, and describe the calculator with the schema's
// comments.
func TestReflection(t *testing.T) {
	srv := calcdtest.Start(t, calcd.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	want := []string{calculatorService, "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"}
	for tr, cc := range srv.Conns(t) {
		s, err := reflectionv1.NewServerReflectionClient(cc).ServerReflectionInfo(ctx)
		if err != nil {
			t.Fatal(err)
		}
		r := ask(t, s, &reflectionv1.ServerReflectionRequest{MessageRequest: &reflectionv1.ServerReflectionRequest_ListServices{}})
		var got []string
		for _, svc := range r.GetListServicesResponse().GetService() {
			got = append(got, svc.GetName())
		}
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("%s: services %v, want %v", tr, got, want)
		}
		r = ask(t, s, &reflectionv1.ServerReflectionRequest{MessageRequest: &reflectionv1.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: calculatorService}})
		files := r.GetFileDescriptorResponse().GetFileDescriptorProto()
		if len(files) == 0 {
			t.Fatalf("%s: no file for %s: %v", tr, calculatorService, r)
		}
		var fd descriptorpb.FileDescriptorProto
		if err := proto.Unmarshal(files[0], &fd); err != nil {
			t.Fatal(err)
		}
		if !hasComment(&fd) {
			t.Errorf("%s: %s carries no comments", tr, fd.GetName())
		}
		_ = s.CloseSend()

		a, err := reflectionv1alpha.NewServerReflectionClient(cc).ServerReflectionInfo(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := a.Send(&reflectionv1alpha.ServerReflectionRequest{MessageRequest: &reflectionv1alpha.ServerReflectionRequest_ListServices{}}); err != nil {
			t.Fatal(err)
		}
		if ar, err := a.Recv(); err != nil || len(ar.GetListServicesResponse().GetService()) != len(want) {
			t.Errorf("%s: v1alpha list: %v %v", tr, ar, err)
		}
		_ = a.CloseSend()
	}
}

func ask(t *testing.T, s grpc.BidiStreamingClient[reflectionv1.ServerReflectionRequest, reflectionv1.ServerReflectionResponse], req *reflectionv1.ServerReflectionRequest) *reflectionv1.ServerReflectionResponse {
	t.Helper()
	if err := s.Send(req); err != nil {
		t.Fatal(err)
	}
	r, err := s.Recv()
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// hasComment reports whether fd's source info holds a comment on its
// first service.
func hasComment(fd *descriptorpb.FileDescriptorProto) bool {
	for _, loc := range fd.GetSourceCodeInfo().GetLocation() {
		if slices.Equal(loc.GetPath(), []int32{6, 0}) && strings.TrimSpace(loc.GetLeadingComments()) != "" { // service 0
			return true
		}
	}
	return false
}

// TestDrainDelay: during DrainDelay health says NOT_SERVING on both
// transports while calls, new connections included, are still served;
// then the drain proceeds and Shutdown returns.
func TestDrainDelay(t *testing.T) {
	srv := calcdtest.Start(t, calcd.Config{DrainDelay: 2 * time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	drained := make(chan error, 1)
	go func() { drained <- srv.Shutdown(ctx) }()
	for tr, cc := range srv.Conns(t) { // dialled after Shutdown began
		h := healthpb.NewHealthClient(cc)
		for {
			r, err := h.Check(ctx, &healthpb.HealthCheckRequest{})
			if err != nil {
				t.Fatalf("%s: Check during the drain delay: %v", tr, err)
			}
			if r.GetStatus() == healthpb.HealthCheckResponse_NOT_SERVING {
				break
			}
			time.Sleep(10 * time.Millisecond) // Shutdown has not begun yet
		}
		if r, err := calculatorv1.NewCalculatorServiceClient(cc).Calculate(ctx, &calculatorv1.CalculateRequest{Operator: calculatorv1.Operator_OPERATOR_ADD, Lhs: 2, Rhs: 3}); err != nil || r.GetResult() != 5 {
			t.Fatalf("%s: a call while NOT_SERVING: %v %v", tr, r, err)
		}
	}
	if err := <-drained; err != nil {
		t.Fatal(err)
	}
}
