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

// TestBusyPoll: --tcp-busy-poll (or CALCD_TCP_BUSY_POLL) sets the raw TCP
// server's BusyPoll, 0 turns it off (a negative BusyPoll), and a negative
// or malformed value is refused.
func TestBusyPoll(t *testing.T) {
	for _, tc := range []struct {
		name    string
		args    []string
		env     map[string]string
		want    time.Duration
		wantErr bool
	}{
		{"default", nil, nil, 50 * time.Microsecond, false},
		{"flag", []string{"--tcp-busy-poll", "20us"}, nil, 20 * time.Microsecond, false},
		{"environment", nil, map[string]string{"CALCD_TCP_BUSY_POLL": "100us"}, 100 * time.Microsecond, false},
		{"flag over environment", []string{"--tcp-busy-poll", "0"}, map[string]string{"CALCD_TCP_BUSY_POLL": "100us"}, -1, false},
		{"off", []string{"--tcp-busy-poll", "0"}, nil, -1, false},
		{"negative flag", []string{"--tcp-busy-poll", "-1us"}, nil, 0, true},
		{"over the maximum", []string{"--tcp-busy-poll", "2ms"}, nil, 0, true},
		{"negative environment", nil, map[string]string{"CALCD_TCP_BUSY_POLL": "-1us"}, 0, true},
		{"malformed environment", nil, map[string]string{"CALCD_TCP_BUSY_POLL": "soon"}, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := parseConfig(tc.args, func(k string) string { return tc.env[k] }, io.Discard)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("parseConfig succeeded with BusyPoll %v, want an error", cfg.calcd.TCP.BusyPoll)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := cfg.calcd.TCP.BusyPoll; got != tc.want {
				t.Errorf("BusyPoll = %v, want %v", got, tc.want)
			}
		})
	}
}
