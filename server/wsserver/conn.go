package wsserver

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"github.com/coder/websocket"
)

// chunkSize is the most a connection's pump reads from a message at a time:
// the size of the buffer it takes from chunkPool while a message is being
// read, and holds no longer.
const chunkSize = 16 << 10

var chunkPool = sync.Pool{New: func() any { b := make([]byte, chunkSize); return &b }}

// errTextMessage ends a connection whose client sent a text message:
// calc.v1 carries binary messages only.
var errTextMessage = errors.New("wsserver: a text message on a calc.v1 WebSocket")

// conn is a WebSocket's binary messages as the byte stream of a net.Conn,
// for tcpserver to serve as it serves a socket. Its deadlines behave as a
// socket's: a Read or Write past one fails with os.ErrDeadlineExceeded and
// the connection goes on (websocket.NetConn would close it instead, and
// tcpserver's reading stage waits for the next burst under short read
// deadlines).
//
// A goroutine of its own, the pump, reads the messages: it hands what it
// read to Read through an unbuffered channel, so it reads ahead by at most
// one chunk, and waits for Read to have taken all of it before reading on.
// Close starts the WebSocket close handshake (status 1000) in the
// background, so that it never blocks its caller; the connection is done
// once the handshake and the pump have ended.
type conn struct {
	srv *Server
	ws  *websocket.Conn
	raw net.Conn // the hijacked HTTP connection under ws: closing it ends everything at once

	data     chan []byte   // the pump's next chunk, unbuffered
	consumed chan struct{} // Read has taken the whole chunk (capacity 1)
	pumpDone chan struct{} // closed when the pump has ended; pumpErr says why
	pumpErr  error
	done     chan struct{} // closed when the pump and the close handshake have ended

	closing   chan struct{} // closed by Close
	closeOnce sync.Once
	mu        sync.Mutex
	closeCode websocket.StatusCode // the close handshake's status; guarded by mu

	cur []byte // the part of the chunk Read holds that it has not returned

	readDeadline  deadline
	writeDeadline deadline
}

func newConn(s *Server, ws *websocket.Conn, raw net.Conn) *conn {
	c := &conn{
		srv: s, ws: ws, raw: raw,
		data:          make(chan []byte),
		consumed:      make(chan struct{}, 1),
		pumpDone:      make(chan struct{}),
		done:          make(chan struct{}),
		closing:       make(chan struct{}),
		closeCode:     websocket.StatusNormalClosure,
		readDeadline:  makeDeadline(),
		writeDeadline: makeDeadline(),
	}
	go c.pump()
	return c
}

// pump reads the WebSocket's messages and hands their bytes to Read.
func (c *conn) pump() {
	defer close(c.pumpDone)
	for {
		typ, r, err := c.ws.Reader(context.Background())
		if err != nil {
			c.pumpErr = readError(err)
			if isClosed(c.closing) {
				// This read took the client's answer to our close frame
				// (or the WebSocket failed): the server closes the TCP
				// connection first (RFC 6455, 7.1.1), which also ends the
				// close handshake's wait for that answer at once.
				_ = c.raw.Close()
			}
			return
		}
		if typ != websocket.MessageBinary {
			c.mu.Lock()
			c.closeCode = websocket.StatusUnsupportedData
			c.mu.Unlock()
			c.pumpErr = errTextMessage
			return
		}
		if err := c.pumpMessage(r); err != nil {
			c.pumpErr = err
			return
		}
	}
}

// pumpMessage hands one message's bytes to Read, a chunk at a time.
func (c *conn) pumpMessage(r io.Reader) error {
	bp := chunkPool.Get().(*[]byte)
	defer chunkPool.Put(bp)
	buf := *bp
	for {
		n, err := r.Read(buf)
		if n > 0 {
			select {
			case c.data <- buf[:n]:
			case <-c.closing:
				return net.ErrClosed
			}
			select {
			case <-c.consumed:
			case <-c.closing:
				return net.ErrClosed
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return readError(err)
		}
	}
}

// readError is what Read reports for the WebSocket's read error err: a
// close with status 1000 (normal) or 1001 (going away) is the end of the
// stream, io.EOF, as a socket's FIN is.
func readError(err error) error {
	switch websocket.CloseStatus(err) {
	case websocket.StatusNormalClosure, websocket.StatusGoingAway:
		return io.EOF
	}
	return err
}

// Read reads the stream's next bytes, whatever messages they came in.
func (c *conn) Read(p []byte) (int, error) {
	select {
	case <-c.closing:
		return 0, net.ErrClosed
	case <-c.readDeadline.wait():
		return 0, os.ErrDeadlineExceeded
	default:
	}
	if len(c.cur) == 0 {
		select {
		case b := <-c.data:
			c.cur = b
		case <-c.pumpDone:
			return 0, c.pumpErr
		case <-c.closing:
			return 0, net.ErrClosed
		case <-c.readDeadline.wait():
			return 0, os.ErrDeadlineExceeded
		}
	}
	n := copy(p, c.cur)
	c.cur = c.cur[n:]
	if len(c.cur) == 0 {
		c.cur = nil
		c.consumed <- struct{}{} // the pump may reuse its buffer
	}
	return n, nil
}

// Write sends p as one binary message.
func (c *conn) Write(p []byte) (int, error) {
	select {
	case <-c.closing:
		return 0, net.ErrClosed
	case <-c.writeDeadline.wait():
		return 0, os.ErrDeadlineExceeded
	default:
	}
	ctx := context.Background()
	if t := c.writeDeadline.time(); !t.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, t)
		defer cancel()
	}
	// A write that runs out of time closes the WebSocket: a frame half
	// written cannot be taken back. tcpserver closes a connection whose
	// write timed out anyway.
	if err := c.ws.Write(ctx, websocket.MessageBinary, p); err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return 0, os.ErrDeadlineExceeded
		}
		return 0, err
	}
	return len(p), nil
}

// closeHandshakeTimeout bounds the WebSocket close handshake: a client
// that has not answered the server's close frame by then is cut off, as
// tcpserver bounds the linger of a half-closed socket.
const closeHandshakeTimeout = time.Second

// Close closes the connection: Read and Write fail at once with
// net.ErrClosed, and the WebSocket close handshake runs in the background,
// for at most closeHandshakeTimeout.
func (c *conn) Close() error {
	c.closeOnce.Do(func() {
		close(c.closing)
		c.readDeadline.stop()
		c.writeDeadline.stop()
		c.mu.Lock()
		code := c.closeCode
		c.mu.Unlock()
		go func() {
			reason := ""
			if code == websocket.StatusUnsupportedData {
				reason = "calc.v1 carries binary messages only"
			}
			cut := time.AfterFunc(closeHandshakeTimeout, func() { _ = c.raw.Close() })
			_ = c.ws.Close(code, reason)
			cut.Stop()
			<-c.pumpDone
			_ = c.raw.Close() // closed already, but for a failed handshake
			close(c.done)
			c.srv.forget(c)
		}()
	})
	return nil
}

// LocalAddr returns the HTTP connection's local address.
func (c *conn) LocalAddr() net.Addr { return c.raw.LocalAddr() }

// RemoteAddr returns the HTTP connection's remote address: the client's.
func (c *conn) RemoteAddr() net.Addr { return c.raw.RemoteAddr() }

// SetDeadline sets both deadlines.
func (c *conn) SetDeadline(t time.Time) error {
	c.readDeadline.set(t)
	c.writeDeadline.set(t)
	return nil
}

// SetReadDeadline sets the read deadline; a Read waiting meanwhile sees it.
func (c *conn) SetReadDeadline(t time.Time) error {
	c.readDeadline.set(t)
	return nil
}

// SetWriteDeadline sets the write deadline of the next writes.
func (c *conn) SetWriteDeadline(t time.Time) error {
	c.writeDeadline.set(t)
	return nil
}

// deadline is a net.Conn deadline as net.Pipe keeps one: a channel that is
// closed when the time passes, so that a Read already waiting sees a
// deadline set after it began.
type deadline struct {
	mu     sync.Mutex
	t      time.Time
	timer  *time.Timer
	cancel chan struct{} // closed when t has passed; never nil
}

func makeDeadline() deadline { return deadline{cancel: make(chan struct{})} }

// set moves the deadline to t; the zero time means none.
func (d *deadline) set(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.timer != nil && !d.timer.Stop() {
		<-d.cancel // the timer fired: wait until its close is done
	}
	d.timer = nil
	d.t = t
	closed := isClosed(d.cancel)
	if t.IsZero() {
		if closed {
			d.cancel = make(chan struct{})
		}
		return
	}
	if dur := time.Until(t); dur > 0 {
		if closed {
			d.cancel = make(chan struct{})
		}
		cancel := d.cancel
		d.timer = time.AfterFunc(dur, func() { close(cancel) })
		return
	}
	if !closed {
		close(d.cancel)
	}
}

// stop releases the timer of a closed connection.
func (d *deadline) stop() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.timer != nil && d.timer.Stop() {
		d.timer = nil
	}
}

// wait returns a channel that is closed when the deadline passes.
func (d *deadline) wait() chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cancel
}

// time returns the deadline; zero means none.
func (d *deadline) time() time.Time {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.t
}

func isClosed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}
