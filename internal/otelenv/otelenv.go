// Package otelenv turns on OpenTelemetry tracing for calc's commands
// (calcd, calc, calc-bench) as the standard OTEL_* environment variables
// say, and only when they ask for it: with none of them set, Setup
// returns nil and nothing is traced, at no cost.
//
// Tracing is on when OTEL_TRACES_EXPORTER is "otlp", or when an OTLP
// endpoint is set (OTEL_EXPORTER_OTLP_ENDPOINT or
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT), unless OTEL_TRACES_EXPORTER is
// "none" or OTEL_SDK_DISABLED is "true". Spans are then batched and
// exported over OTLP, by gRPC or HTTP (OTEL_EXPORTER_OTLP_PROTOCOL or
// OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: "http/protobuf", the
// specification's default, or "grpc"). The exporter reads the other
// OTEL_EXPORTER_OTLP_* variables itself (headers, TLS files, insecure,
// timeout, compression), and the SDK reads the sampler
// (OTEL_TRACES_SAMPLER, OTEL_TRACES_SAMPLER_ARG; parentbased_always_on by
// default), the resource (OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES)
// and the span limits. OTEL_PROPAGATORS may name tracecontext, baggage
// (both, the default) or none. Everything is read from the process's
// environment.
package otelenv

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
)

// Tracing is the tracing Setup installed.
type Tracing struct {
	// Provider makes the spans and exports them.
	Provider *sdktrace.TracerProvider
	// Propagator carries span context in call metadata.
	Propagator propagation.TextMapPropagator
	// Description says where spans go, for a log line, such as
	// "otlp http/protobuf to http://localhost:4318 (sampler parentbased_always_on)".
	Description string
	// RootsUnsampled reports that the sampler samples no trace that a
	// process starts itself (always_off, parentbased_always_off, or a
	// ratio of 0): only a caller's sampled trace is ever recorded.
	RootsUnsampled bool
}

// Shutdown exports the spans still buffered, within ctx, and stops.
func (t *Tracing) Shutdown(ctx context.Context) error { return t.Provider.Shutdown(ctx) }

// Enabled reports whether the environment asks for tracing.
func Enabled() bool {
	if strings.EqualFold(strings.TrimSpace(os.Getenv("OTEL_SDK_DISABLED")), "true") {
		return false
	}
	switch exp := strings.TrimSpace(os.Getenv("OTEL_TRACES_EXPORTER")); exp {
	case "none":
		return false
	case "":
		return os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != ""
	default:
		return true // otlp, or a value Setup refuses
	}
}

// Setup returns the tracing the environment asks for, with service as
// the default service.name, or nil if it asks for none. logger receives
// the SDK's errors, such as a failed export (nil: slog.Default()). It
// fails on a value it does not support. Setup does not touch
// OpenTelemetry's global providers.
func Setup(ctx context.Context, service string, logger *slog.Logger) (*Tracing, error) {
	if !Enabled() {
		return nil, nil
	}
	if exp := strings.TrimSpace(os.Getenv("OTEL_TRACES_EXPORTER")); exp != "" && exp != "otlp" {
		return nil, fmt.Errorf("OTEL_TRACES_EXPORTER=%q: calc exports traces with otlp (or none)", exp)
	}
	prop, err := propagatorFromEnv()
	if err != nil {
		return nil, err
	}
	protocol := firstEnv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")
	if protocol == "" {
		protocol = "http/protobuf"
	}
	var exporter *otlptrace.Exporter
	endpoint := firstEnv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
	switch protocol {
	case "grpc":
		exporter, err = otlptracegrpc.New(ctx)
		if endpoint == "" {
			endpoint = "https://localhost:4317"
		}
	case "http/protobuf":
		exporter, err = otlptracehttp.New(ctx)
		if endpoint == "" {
			endpoint = "https://localhost:4318"
		}
	default:
		return nil, fmt.Errorf("OTEL_EXPORTER_OTLP_PROTOCOL=%q: calc exports traces over grpc or http/protobuf", protocol)
	}
	if err != nil {
		return nil, fmt.Errorf("OTLP trace exporter: %w", err)
	}
	res, err := resource.New(ctx,
		resource.WithAttributes(semconv.ServiceName(service)),
		resource.WithFromEnv(), // OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win
		resource.WithTelemetrySDK(),
	)
	if err != nil && !errors.Is(err, resource.ErrPartialResource) {
		return nil, fmt.Errorf("OTEL_RESOURCE_ATTRIBUTES: %w", err)
	}
	if logger == nil {
		logger = slog.Default()
	}
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) { logger.Warn("tracing", "error", err) }))
	sampler := strings.TrimSpace(os.Getenv("OTEL_TRACES_SAMPLER"))
	if sampler == "" {
		sampler = "parentbased_always_on"
	}
	arg := strings.TrimSpace(os.Getenv("OTEL_TRACES_SAMPLER_ARG"))
	rootsUnsampled := sampler == "always_off" || sampler == "parentbased_always_off"
	if sampler == "traceidratio" || sampler == "parentbased_traceidratio" {
		ratio, err := strconv.ParseFloat(arg, 64)
		rootsUnsampled = err == nil && ratio <= 0 // the SDK reads a missing or bad ratio as 1
	}
	desc := sampler
	if arg != "" {
		desc += " " + arg
	}
	return &Tracing{
		// The sampler comes from OTEL_TRACES_SAMPLER: the SDK reads it.
		Provider:       sdktrace.NewTracerProvider(sdktrace.WithBatcher(exporter), sdktrace.WithResource(res)),
		Propagator:     prop,
		Description:    fmt.Sprintf("otlp %s to %s (sampler %s)", protocol, endpoint, desc),
		RootsUnsampled: rootsUnsampled,
	}, nil
}

// propagatorFromEnv returns the propagators OTEL_PROPAGATORS names.
func propagatorFromEnv() (propagation.TextMapPropagator, error) {
	v := os.Getenv("OTEL_PROPAGATORS")
	if strings.TrimSpace(v) == "" {
		v = "tracecontext,baggage"
	}
	var props []propagation.TextMapPropagator
	for name := range strings.SplitSeq(v, ",") {
		switch strings.TrimSpace(name) {
		case "tracecontext":
			props = append(props, propagation.TraceContext{})
		case "baggage":
			props = append(props, propagation.Baggage{})
		case "none":
		default:
			return nil, fmt.Errorf("OTEL_PROPAGATORS: %q is not supported (tracecontext, baggage or none)", strings.TrimSpace(name))
		}
	}
	return propagation.NewCompositeTextMapPropagator(props...), nil
}

// firstEnv returns the first of the variables that is set.
func firstEnv(names ...string) string {
	for _, n := range names {
		if v := strings.TrimSpace(os.Getenv(n)); v != "" {
			return v
		}
	}
	return ""
}
