package tcpserver

import (
	"math/rand/v2"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// errMaxAgeGrace ends the calls still running on a connection whose
// MaxConnectionAgeGrace has passed: they answer UNAVAILABLE, and a client
// may retry them on a new connection.
var errMaxAgeGrace = status.Error(codes.Unavailable, "connection closed: max connection age and its grace passed")

// startAgeing arms MaxConnectionAge on an established connection. Past it
// (±10%, as grpc-go does, so that connections opened together do not all
// leave together) the connection is sent GOAWAY and drains: its client
// opens a new one, which a load balancer may send elsewhere. Past
// MaxConnectionAgeGrace more, calls still running end with UNAVAILABLE.
func (c *conn) startAgeing() {
	age := c.srv.opts.MaxConnectionAge
	if age <= 0 {
		return
	}
	age = time.Duration(float64(age) * (0.9 + 0.2*rand.Float64()))
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.closed {
		c.ageTimer = time.AfterFunc(age, c.aged)
	}
}

// aged is the connection's MaxConnectionAge passing.
func (c *conn) aged() {
	c.goAway(codes.OK, "max connection age reached")
	grace := c.srv.opts.MaxConnectionAgeGrace
	if grace <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.closed {
		c.ageTimer = time.AfterFunc(grace, func() { c.cancel(errMaxAgeGrace) })
	}
}
