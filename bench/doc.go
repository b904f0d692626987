// Package bench is the load-generation engine behind calc-bench (which
// calc bench runs) and the echo floor (scripts/echofloor). It knows no RPC
// system: a load is a function that makes one call (closed loop or fixed
// rate) or a Pipe that keeps a window of calls in flight on one stream. The engine runs the
// load for a warm-up and then a measured window bounded by a duration and
// optionally a call count, records latencies in a lock-free log-linear
// Histogram per worker shard and counts errors by gRPC code. Around it the
// package has what a benchmark needs that is not load: wire-byte counting
// connections, CPU and memory probes of this process and of a server
// process, the JSON/text Report, the SVG percentile chart, the
// idle-connection memory mode and the hostile-burst memory mode.
package bench
