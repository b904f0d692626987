package httpserver

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/vanguard"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// bodyTimeout bounds the reading of the body of every request but those
// of the client-streaming methods: the body must have arrived within d of
// the header, or the request is answered 408 with the JSON of a
// google.rpc.Status DEADLINE_EXCEEDED and its connection closed. The body
// is read whole (up to limit bytes, past which the rest streams on for the
// size limit to refuse) before next sees it: such a body is one message,
// which the transcoder and the gRPC server would buffer anyway, and a read
// deadline left on an HTTP/1.1 connection while the handler runs would
// cancel the request when it passed.
func bodyTimeout(next http.Handler, clientStreaming map[string]bool, d time.Duration, limit int) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 || clientStreaming[r.URL.Path] {
			next.ServeHTTP(w, r)
			return
		}
		rc := http.NewResponseController(w)
		if err := rc.SetReadDeadline(time.Now().Add(d)); err != nil {
			next.ServeHTTP(w, r) // a ResponseWriter without deadlines (none of net/http's)
			return
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, int64(limit)+1))
		if err != nil {
			// The deadline stays: net/http, closing the request, would
			// otherwise wait for the rest of the body.
			if errors.Is(err, os.ErrDeadlineExceeded) {
				w.Header().Set("Connection", "close")
				writeStatus(w, http.StatusRequestTimeout, status.Newf(codes.DeadlineExceeded,
					"the request body did not arrive within %v", d))
			}
			return // otherwise the client has gone
		}
		_ = rc.SetReadDeadline(time.Time{})
		r.Body = readCloser{io.MultiReader(bytes.NewReader(body), r.Body), r.Body}
		next.ServeHTTP(w, r)
	})
}

// readCloser reads from Reader and closes Closer.
type readCloser struct {
	io.Reader
	io.Closer
}

// connectUnary prepares Connect unary calls for the transcoder:
//
//   - it marks as Connect those that leave out the Connect-Protocol-Version
//     header, which the Connect protocol makes optional for them and
//     connect-go's own handlers do not require: a POST of application/json
//     or application/proto to a unary method's path (/package.Service/Method,
//     where no REST rule lives) is a Connect call, which vanguard would
//     otherwise take for REST and answer 404;
//   - it refuses with RESOURCE_EXHAUSTED (HTTP 429) one whose Content-Length
//     says the message is over limit, which vanguard, when it passes a
//     binary message through untouched, would answer UNAVAILABLE.
func connectUnary(next http.Handler, unary map[string]bool, limit int) http.Handler {
	errors := connect.NewErrorWriter()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || !unary[r.URL.Path] {
			next.ServeHTTP(w, r)
			return
		}
		switch ct, _, _ := strings.Cut(r.Header.Get("Content-Type"), ";"); strings.TrimSpace(strings.ToLower(ct)) {
		case "application/json", "application/proto":
			if r.Header.Get("Connect-Protocol-Version") == "" {
				r.Header.Set("Connect-Protocol-Version", "1")
			}
			if r.ContentLength > int64(limit) {
				w.Header().Set("Connection", "close") // the body is left unread
				_ = errors.Write(w, r, connect.NewError(connect.CodeResourceExhausted,
					fmt.Errorf("the request message is %d bytes, over the limit of %d", r.ContentLength, limit)))
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// jsonCodec and protoCodec are vanguard's codecs, but a request that does
// not decode is INVALID_ARGUMENT (HTTP 400), as on the other transports,
// where vanguard would answer UNKNOWN. (The codecs decode responses too,
// which the service makes itself and which always decode.)
type jsonCodec struct{ *vanguard.JSONCodec }

func (c jsonCodec) Unmarshal(data []byte, msg proto.Message) error {
	return invalidArgument(c.JSONCodec.Unmarshal(data, msg))
}

func (c jsonCodec) UnmarshalField(data []byte, msg proto.Message, field protoreflect.FieldDescriptor) error {
	return invalidArgument(c.JSONCodec.UnmarshalField(data, msg, field))
}

type protoCodec struct{ *vanguard.ProtoCodec }

func (c protoCodec) Unmarshal(data []byte, msg proto.Message) error {
	return invalidArgument(c.ProtoCodec.Unmarshal(data, msg))
}

func invalidArgument(err error) error {
	if err == nil {
		return nil
	}
	return connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("the request does not decode: %w", err))
}
