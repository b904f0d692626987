package tcpconn_test

import (
	"context"
	"fmt"
	"log"
	"net"
	"time"

	"google.golang.org/grpc/status"

	"github.com/calcrpc/calc/client/tcpconn"
	calculatorv1 "github.com/calcrpc/calc/gen/calculator/v1"
	"github.com/calcrpc/calc/server/calculator"
	"github.com/calcrpc/calc/server/tcpserver"
)

// Example serves the calculator over raw TCP on loopback and calls it with
// the generated gRPC client.
func Example() {
	srv := tcpserver.New(tcpserver.Options{})
	calculatorv1.RegisterCalculatorServiceServer(srv, calculator.New())
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	go srv.Serve(lis)
	defer srv.Shutdown(context.Background())

	ctx := context.Background()
	conn, err := tcpconn.Dial(ctx, lis.Addr().String(), tcpconn.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	client := calculatorv1.NewCalculatorServiceClient(conn)

	sum, err := client.Calculate(ctx, &calculatorv1.CalculateRequest{Operator: calculatorv1.Operator_OPERATOR_ADD, Lhs: 2, Rhs: 3})
	fmt.Println(sum.GetResult(), err)
	value, err := client.Evaluate(ctx, &calculatorv1.EvaluateRequest{Expression: "7 / 2"})
	fmt.Println(value.GetResult(), err)
	_, err = client.Calculate(ctx, &calculatorv1.CalculateRequest{Operator: calculatorv1.Operator_OPERATOR_DIVIDE, Lhs: 1})
	fmt.Println(status.Code(err), status.Convert(err).Message())
	// Output:
	// 5 <nil>
	// 3.5 <nil>
	// InvalidArgument division by zero: 1 / 0
}

// ExampleNewClient spreads calls over two servers round robin and goes on
// with one of them after the other shuts down.
func ExampleNewClient() {
	var addrs []string
	var servers []*tcpserver.Server
	for range 2 {
		srv := tcpserver.New(tcpserver.Options{})
		calculatorv1.RegisterCalculatorServiceServer(srv, calculator.New())
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			log.Fatal(err)
		}
		go srv.Serve(lis)
		defer srv.Shutdown(context.Background())
		addrs = append(addrs, lis.Addr().String())
		servers = append(servers, srv)
	}

	cc, err := tcpconn.NewClient(addrs[0]+","+addrs[1], tcpconn.ClientOptions{})
	if err != nil {
		log.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	fmt.Println(cc.WaitReady(ctx), cc.State())
	client := calculatorv1.NewCalculatorServiceClient(cc)

	servers[0].Shutdown(ctx)
	for range 4 {
		sum, err := client.Calculate(ctx, &calculatorv1.CalculateRequest{Operator: calculatorv1.Operator_OPERATOR_ADD, Lhs: 2, Rhs: 3})
		fmt.Println(sum.GetResult(), err)
	}
	// Output:
	// <nil> READY
	// 5 <nil>
	// 5 <nil>
	// 5 <nil>
	// 5 <nil>
}
