package wire

import (
	"fmt"

	"google.golang.org/grpc/codes"
)

// codeNames are the status code names of the gRPC specification
// (doc/statuscodes.md, google/rpc/code.proto), indexed by code.
var codeNames = [...]string{
	"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
	"ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED",
	"OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED",
}

// CodeName returns the name the gRPC specification gives code c, such as
// "CANCELLED" or "INVALID_ARGUMENT" (grpc-go's String says "Canceled" and
// "InvalidArgument"), or "CODE_n" for a code it does not define. Every
// calc program prints codes by this one table.
func CodeName(c codes.Code) string {
	if int(c) < len(codeNames) {
		return codeNames[c]
	}
	return fmt.Sprintf("CODE_%d", uint32(c))
}
