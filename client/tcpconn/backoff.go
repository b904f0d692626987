package tcpconn

import "time"

// DefaultMinConnectTimeout is the least time a Client gives one connection
// attempt, handshake included, as gRPC's MIN_CONNECT_TIMEOUT.
const DefaultMinConnectTimeout = 20 * time.Second
