package main

import (
	"context"
	"errors"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/calcrpc/calc/client/dial"
	"github.com/calcrpc/calc/client/tcpconn"
)

// probeTimeout bounds the raw TCP handshake with which transportHint asks
// whether a gRPC address is calc's raw TCP port.
const probeTimeout = 300 * time.Millisecond

// transportHint recognises the errors of calc speaking the wrong one of
// calc's two protocols to an address, and says what to do: a raw TCP dial
// answered in HTTP/2 (tcpconn.ErrHTTP2Server) went to a gRPC port, and a
// gRPC call that failed with UNAVAILABLE or DEADLINE_EXCEEDED went to an
// address that completes a raw TCP handshake.
type transportHint struct {
	cfg    dial.Config
	probed bool // the address was probed, at most once
	rawTCP bool // and it completed a raw TCP handshake
}

// explain returns err, or an error with err's code whose message says to
// use the other transport.
func (h *transportHint) explain(ctx context.Context, err error) error {
	st := status.Convert(err)
	switch {
	case h.cfg.Transport == "tcp" && errors.Is(err, tcpconn.ErrHTTP2Server):
		return status.Error(st.Code(), st.Message()+": use --transport grpc")
	case h.cfg.Transport == "grpc" && (st.Code() == codes.Unavailable || st.Code() == codes.DeadlineExceeded) && h.speaksRawTCP(ctx):
		return status.Errorf(st.Code(), "%s completed calc's raw TCP handshake, not gRPC's: this looks like calc's raw TCP port: use --transport tcp", h.cfg.Addr)
	}
	return err
}

// speaksRawTCP reports whether the address completes calc's raw TCP
// handshake within probeTimeout. It probes only the first time.
func (h *transportHint) speaksRawTCP(ctx context.Context) bool {
	if !h.probed {
		h.probed = true
		ctx, cancel := context.WithTimeout(ctx, probeTimeout)
		defer cancel()
		if conn, err := tcpconn.Dial(ctx, h.cfg.Addr, tcpconn.Options{}); err == nil {
			conn.Close()
			h.rawTCP = true
		}
	}
	return h.rawTCP
}
