package tcpserver_test

import (
	"context"
	"net"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/peer"

	"github.com/calcrpc/calc/client/tcpconn"
	"github.com/calcrpc/calc/server/tcpserver"
)

// TestPeerFromContext checks that a plaintext call's context answers
// peer.FromContext with the client's and the server's addresses: the
// connection makes its peer.Peer on first use, under the key it learnt
// from grpc/peer (connctx.go), so a change in how grpc/peer looks up its
// key fails here rather than losing the peer of every call.
func TestPeerFromContext(t *testing.T) {
	peers := make(chan *peer.Peer, 2)
	srv := start(t, tcpserver.Options{
		UnaryInterceptors: []grpc.UnaryServerInterceptor{func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			pr, _ := peer.FromContext(ctx)
			peers <- pr
			return h(ctx, req)
		}},
	})
	c := srv.DialTCP(t, tcpconn.Options{})
	addOver(t, c)
	addOver(t, c)
	first, second := <-peers, <-peers
	if first == nil {
		t.Fatal("peer.FromContext: no peer in a call's context")
	}
	if first != second {
		t.Fatalf("two calls on one connection saw two peers: %v, %v", first, second)
	}
	addr, ok := first.Addr.(*net.TCPAddr)
	if !ok || !addr.IP.IsLoopback() || addr.Port == 0 {
		t.Fatalf("peer Addr %v (%T), want the client's loopback address", first.Addr, first.Addr)
	}
	if first.LocalAddr == nil || first.LocalAddr.String() != srv.TCPAddr {
		t.Fatalf("peer LocalAddr %v, want the server's %v", first.LocalAddr, srv.TCPAddr)
	}
}
