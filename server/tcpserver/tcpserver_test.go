package tcpserver_test

import "github.com/calcrpc/calc/client/tcpconn"

// tcpconnOptions are the client options of the tests' normal calls.
var tcpconnOptions = tcpconn.Options{}
