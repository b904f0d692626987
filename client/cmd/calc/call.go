package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"
)

// runCall is calc call METHOD [JSON]: it calls any method the server's
// reflection describes with requests written in JSON (protojson), taken
// from the argument or, without one or for "-", from stdin, and prints
// each response as JSON. Unary and server-streaming methods take one
// request; client-streaming and bidi methods take any number, JSON values
// one after the other (one a line, or simply concatenated), sent as they
// are read while responses print as they arrive.
func runCall(ctx context.Context, s *session, args []string) int {
	rc, err := newReflectionClient(ctx, s.conn)
	if err != nil {
		return s.fail(err)
	}
	md, err := rc.method(args[0])
	rc.close()
	if err != nil {
		return s.fail(err)
	}
	input := s.stdin
	if len(args) == 2 && args[1] != "-" {
		input = strings.NewReader(args[1])
	}
	reqs := &requestReader{dec: json.NewDecoder(input), desc: md.Input()}
	path := fmt.Sprintf("/%s/%s", md.Parent().FullName(), md.Name())
	next := reqs.next
	if !md.IsStreamingClient() {
		req, err := reqs.only()
		if err != nil {
			return s.requestFailed(err)
		}
		if !md.IsStreamingServer() {
			resp := dynamicpb.NewMessage(md.Output())
			if err := s.conn.Invoke(ctx, path, req, resp); err != nil {
				return s.fail(err)
			}
			return s.print(resp)
		}
		sent := false
		next = func() (proto.Message, error) {
			if sent {
				return nil, io.EOF
			}
			sent = true
			return req, nil
		}
	}
	return s.stream(ctx, md, path, next)
}

// stream makes a streaming call of md, sending the requests next returns
// (until io.EOF) from a goroutine while it prints the responses, so that
// a long input cannot stall on a server waiting to be read.
func (s *session) stream(ctx context.Context, md protoreflect.MethodDescriptor, path string, next func() (proto.Message, error)) int {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	desc := &grpc.StreamDesc{StreamName: string(md.Name()), ClientStreams: md.IsStreamingClient(), ServerStreams: md.IsStreamingServer()}
	stream, err := s.conn.NewStream(ctx, desc, path)
	if err != nil {
		return s.fail(err)
	}
	sendErr := make(chan error, 1)
	go func() {
		err := sendAll(stream, next)
		sendErr <- err
		if err != nil {
			cancel() // the call fails: the receiver stops
		}
	}()
	var recvErr error
	for {
		resp := dynamicpb.NewMessage(md.Output())
		if recvErr = stream.RecvMsg(resp); recvErr != nil {
			break
		}
		if code := s.print(resp); code != exitOK {
			return code
		}
	}
	select {
	case err := <-sendErr:
		if err != nil {
			return s.requestFailed(err)
		}
	default: // still reading input the server no longer wants
	}
	if recvErr != io.EOF {
		return s.fail(recvErr)
	}
	return exitOK
}

// sendAll sends the requests next returns until io.EOF, then half-closes
// the stream. It stops quietly when the call has ended (SendMsg io.EOF:
// RecvMsg reports the call's status).
func sendAll(stream grpc.ClientStream, next func() (proto.Message, error)) error {
	for {
		req, err := next()
		if err == io.EOF {
			return stream.CloseSend()
		}
		if err != nil {
			return err
		}
		if err := stream.SendMsg(req); err == io.EOF {
			return nil
		} else if err != nil {
			return err
		}
	}
}

// requestReader reads a method's requests, JSON values one after the
// other, into dynamic messages of type desc.
type requestReader struct {
	dec  *json.Decoder
	desc protoreflect.MessageDescriptor
	n    int // requests read
}

// badRequestError is input that is not the JSON of a request: a usage
// error, which calc call exits 2 for.
type badRequestError struct{ msg string }

func (e *badRequestError) Error() string { return e.msg }

// next returns the next request, io.EOF at the end of the input, a
// *badRequestError for input that is not a request's JSON, or the input's
// read error.
func (r *requestReader) next() (proto.Message, error) {
	var raw json.RawMessage
	err := r.dec.Decode(&raw)
	var syntaxErr *json.SyntaxError
	switch {
	case err == io.EOF:
		return nil, io.EOF
	case errors.As(err, &syntaxErr) || errors.Is(err, io.ErrUnexpectedEOF):
		return nil, &badRequestError{fmt.Sprintf("request %d is not JSON: %v", r.n+1, err)}
	case err != nil:
		return nil, fmt.Errorf("reading the requests: %w", err)
	}
	r.n++
	msg := dynamicpb.NewMessage(r.desc)
	if err := protojson.Unmarshal(raw, msg); err != nil {
		return nil, &badRequestError{fmt.Sprintf("request %d is not a %s: %v", r.n, r.desc.FullName(), err)}
	}
	return msg, nil
}

// only returns the one request of a method that takes one.
func (r *requestReader) only() (proto.Message, error) {
	req, err := r.next()
	if err == io.EOF {
		return nil, &badRequestError{fmt.Sprintf("no request: give a %s in JSON as an argument or on stdin", r.desc.FullName())}
	}
	if err != nil {
		return nil, err
	}
	switch _, err := r.next(); {
	case err == io.EOF:
		return req, nil
	case err != nil:
		return nil, err
	}
	return nil, &badRequestError{"more than one request for a method that takes one"}
}

// print prints a response as protojson with the schema's field names:
// indented over several lines, or with --json on one line. A response
// protojson cannot write (an Any of a type the schema lacks) fails the
// command as INTERNAL.
func (s *session) print(m proto.Message) int {
	b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(m)
	if err != nil {
		return s.fail(status.Errorf(codes.Internal, "printing a response: %v", err))
	}
	var out bytes.Buffer
	if s.cfg.json {
		out.Write(compactJSON(b))
	} else {
		_ = json.Indent(&out, b, "", "  ")
	}
	out.WriteByte('\n')
	_, _ = s.stdout.Write(out.Bytes())
	return exitOK
}

// compactJSON returns b, valid JSON, without spaces between its tokens.
// protojson varies its spacing from build to build on purpose: calc's
// output does not.
func compactJSON(b []byte) json.RawMessage {
	var out bytes.Buffer
	_ = json.Compact(&out, b)
	return out.Bytes()
}
