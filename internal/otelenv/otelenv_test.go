package otelenv_test

import (
	"context"
	"strings"
	"testing"

	"github.com/calcrpc/calc/internal/otelenv"
)

// TestSetup: which environments turn tracing on, what Setup reports of
// them, and the values it refuses.
func TestSetup(t *testing.T) {
	for _, tt := range []struct {
		env            string // space-separated NAME=VALUE
		on             bool
		rootsUnsampled bool
		desc, err      string // in the description, in the error
	}{
		{env: "", on: false},
		{env: "OTEL_SERVICE_NAME=x OTEL_TRACES_SAMPLER=always_off", on: false},
		{env: "OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:9", on: true, desc: "otlp http/protobuf to http://127.0.0.1:9 (sampler parentbased_always_on)"},
		{env: "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=http://127.0.0.1:9 OTEL_EXPORTER_OTLP_PROTOCOL=grpc", on: true, desc: "otlp grpc to http://127.0.0.1:9"},
		{env: "OTEL_TRACES_EXPORTER=otlp", on: true, desc: "otlp http/protobuf to https://localhost:4318"},
		{env: "OTEL_TRACES_EXPORTER=otlp OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=grpc", on: true, desc: "otlp grpc to https://localhost:4317"},
		{env: "OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:9 OTEL_TRACES_EXPORTER=none", on: false},
		{env: "OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:9 OTEL_SDK_DISABLED=true", on: false},
		{env: "OTEL_TRACES_EXPORTER=otlp OTEL_TRACES_SAMPLER=parentbased_always_off", on: true, rootsUnsampled: true},
		{env: "OTEL_TRACES_EXPORTER=otlp OTEL_TRACES_SAMPLER=always_off", on: true, rootsUnsampled: true},
		{env: "OTEL_TRACES_EXPORTER=otlp OTEL_TRACES_SAMPLER=parentbased_traceidratio OTEL_TRACES_SAMPLER_ARG=0", on: true, rootsUnsampled: true, desc: "(sampler parentbased_traceidratio 0)"},
		{env: "OTEL_TRACES_EXPORTER=otlp OTEL_TRACES_SAMPLER=traceidratio OTEL_TRACES_SAMPLER_ARG=0.1", on: true},
		{env: "OTEL_TRACES_EXPORTER=otlp OTEL_TRACES_SAMPLER=traceidratio", on: true},
		{env: "OTEL_TRACES_EXPORTER=otlp OTEL_PROPAGATORS=tracecontext", on: true},
		{env: "OTEL_TRACES_EXPORTER=console", on: true, err: `OTEL_TRACES_EXPORTER="console"`},
		{env: "OTEL_TRACES_EXPORTER=otlp OTEL_EXPORTER_OTLP_PROTOCOL=http/json", on: true, err: `OTEL_EXPORTER_OTLP_PROTOCOL="http/json"`},
		{env: "OTEL_TRACES_EXPORTER=otlp OTEL_PROPAGATORS=tracecontext,b3", on: true, err: `OTEL_PROPAGATORS: "b3"`},
	} {
		t.Run(tt.env, func(t *testing.T) {
			for _, name := range []string{"OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
				"OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG", "OTEL_PROPAGATORS", "OTEL_SERVICE_NAME"} {
				t.Setenv(name, "")
			}
			for _, kv := range strings.Fields(tt.env) {
				name, value, _ := strings.Cut(kv, "=")
				t.Setenv(name, value)
			}
			if got := otelenv.Enabled(); got != tt.on {
				t.Fatalf("Enabled() = %v, want %v", got, tt.on)
			}
			tr, err := otelenv.Setup(context.Background(), "test", nil)
			switch {
			case tt.err != "":
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("Setup: %v, want an error with %q", err, tt.err)
				}
				return
			case err != nil:
				t.Fatal(err)
			case (tr != nil) != tt.on:
				t.Fatalf("Setup returned %v, want tracing %v", tr, tt.on)
			case tr == nil:
				return
			}
			defer tr.Shutdown(context.Background())
			if tr.RootsUnsampled != tt.rootsUnsampled || !strings.Contains(tr.Description, tt.desc) {
				t.Errorf("RootsUnsampled %v, description %q; want %v and %q in it", tr.RootsUnsampled, tr.Description, tt.rootsUnsampled, tt.desc)
			}
		})
	}
}
