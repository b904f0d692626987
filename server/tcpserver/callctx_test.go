package tcpserver

import (
	"context"
	"testing"
	"time"
)

// TestDoneAfterEnd asks a call's context for Done for the first time after
// its connection's context or its deadline ended it unnoticed: Done is
// closed, once, and Err says why.
func TestDoneAfterEnd(t *testing.T) {
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name string
		cl   *call
		want error
	}{
		{"connection ended", &call{parent: ended}, context.Canceled},
		{"deadline passed", &call{parent: context.Background(), deadline: time.Unix(1, 0), hasDeadline: true}, context.DeadlineExceeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			select {
			case <-tt.cl.Done():
			default:
				t.Fatal("Done is open")
			}
			if err := tt.cl.Err(); err != tt.want {
				t.Fatalf("Err() = %v, want %v", err, tt.want)
			}
		})
	}
}
