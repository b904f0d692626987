// Package wire is calc's raw TCP wire protocol v1 (PROTOCOL.md) with no
// sockets in it: the connection preface, the frame format, request headers,
// settings, goaway, snappy message compression and the limits checked
// before any allocation. It works over any io.Reader and io.Writer and is
// shared by the server (server/tcpserver) and the Go client
// (client/tcpconn).
//
// A frame is a 4-byte big-endian length of what follows, then a 6-byte
// header (kind, flags, 32-bit big-endian call id) and the payload:
//
//	length(4) kind(1) flags(1) id(4) payload(length-6)
//
// Reader reads frames with a buffer it can hand back to a pool between
// bursts, so an idle connection holds no buffer; Append* functions encode
// frames onto a byte slice so a writer can coalesce many frames into one
// write.
package wire
