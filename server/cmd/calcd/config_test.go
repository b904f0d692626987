package main

import (
	"io"
	"testing"
	"time"
)

// TestConnectionAgeOnEveryTransport: --max-connection-age and its grace,
// from a flag or the environment, reach the raw TCP, gRPC and HTTP ports
// alike (the WebSocket endpoint takes the raw TCP options).
func TestConnectionAgeOnEveryTransport(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
	}{
		{"flags", []string{"--max-connection-age", "30m", "--max-connection-age-grace", "10s"}, nil},
		{"environment", nil, map[string]string{"CALCD_MAX_CONNECTION_AGE": "30m", "CALCD_MAX_CONNECTION_AGE_GRACE": "10s"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := parseConfig(tc.args, func(k string) string { return tc.env[k] }, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			c := cfg.calcd
			for _, got := range []struct {
				port       string
				age, grace time.Duration
			}{
				{"tcp", c.TCP.MaxConnectionAge, c.TCP.MaxConnectionAgeGrace},
				{"grpc", c.GRPC.MaxConnectionAge, c.GRPC.MaxConnectionAgeGrace},
				{"http", c.HTTP.MaxConnectionAge, c.HTTP.MaxConnectionAgeGrace},
			} {
				if got.age != 30*time.Minute || got.grace != 10*time.Second {
					t.Errorf("%s: age %v grace %v, want 30m 10s", got.port, got.age, got.grace)
				}
			}
		})
	}
}
