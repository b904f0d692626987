package main

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// exposition is a /metrics body with a counter, a gauge, a histogram and a
// summary.
const exposition = `# HELP calls_total Calls.
# TYPE calls_total counter
calls_total{code="OK"} 3
# HELP open Open.
# TYPE open gauge
open 1
# HELP seconds Latency.
# TYPE seconds histogram
seconds_bucket{le="0.1"} 1
seconds_bucket{le="+Inf"} 1
seconds_sum 0.05
seconds_count 1
# HELP pause Pauses.
# TYPE pause summary
pause{quantile="0.5"} 0.001
pause_sum 0.002
pause_count 2
# HELP unused_total Named by nothing.
# TYPE unused_total counter
unused_total 0
`

const rules = `groups:
  - name: g
    rules:
      - record: job:calls:rate5m
        expr: sum by (job) (rate(calls_total[5m]))
      - alert: Slow
        expr: histogram_quantile(0.99, sum by (le) (rate(seconds_bucket[5m]))) > 1 and on() up == 1
        annotations:
          summary: "slow: {{ $value }}"
`

// write writes content to a file in dir and returns its path.
func write(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestMetricNames(t *testing.T) {
	for _, tc := range []struct {
		expr  string
		names []string
		err   string
	}{
		{expr: `sum(rate(calls_total{code!="OK"}[5m])) / sum(rate(calls_total[5m]))`, names: []string{"calls_total"}},
		{expr: `histogram_quantile(0.5, rate(seconds_bucket[5m])) + pause_sum offset 1h`, names: []string{"seconds_bucket", "pause_sum"}},
		{expr: `{__name__="open", job="x"}`, names: []string{"open"}},
		{expr: `vector(1)`},
		{expr: `{__name__=~"open|calls_total"}`, err: "matches metric names by pattern"},
		{expr: `sum(rate(calls_total[$__rate_interval]))`, err: "parse error"},
		{expr: `sum(`, err: "parse error"},
	} {
		names, err := metricNames(tc.expr)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: error %v, want one with %q", tc.expr, err, tc.err)
			}
			continue
		}
		if err != nil || !slices.Equal(names, tc.names) {
			t.Errorf("%s: %q, %v; want %q", tc.expr, names, err, tc.names)
		}
	}
}

// dashboardJSON is a dashboard with a row holding a panel, a query
// variable in each of Grafana's forms, and $__rate_interval.
const dashboardJSON = `{
  "uid": "d", "title": "D",
  "templating": {"list": [
    {"name": "datasource", "type": "datasource", "query": "prometheus"},
    {"name": "job", "type": "query", "query": {"query": "label_values(open, job)", "refId": "x"}},
    {"name": "inst", "type": "query", "query": "label_values(calls_total{job=~\"$job\"}, instance)"},
    {"name": "any", "type": "query", "query": "label_values(job)"},
    {"name": "top", "type": "query", "query": "query_result(topk(1, rate(calls_total[$__range])))"}
  ]},
  "panels": [
    {"id": 1, "type": "timeseries", "title": "calls", "targets": [
      {"refId": "A", "expr": "sum(rate(calls_total{job=~\"$job\"}[$__rate_interval]))"},
      {"refId": "B", "expr": "job:calls:rate5m"}]},
    {"id": 2, "type": "row", "title": "more", "panels": [
      {"id": 3, "type": "stat", "title": "pauses", "targets": [{"refId": "A", "expr": "rate(pause_count[${__interval}])"}]}]}
  ]
}`

func TestCheck(t *testing.T) {
	dir := t.TempDir()
	metrics := write(t, dir, "metrics.txt", exposition)
	rulesFile := write(t, dir, "rules.yml", rules)
	dash := write(t, dir, "dash.json", dashboardJSON)
	r, err := check(metrics, []string{rulesFile}, []string{dash})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.problems) > 0 {
		t.Fatalf("problems: %q", r.problems)
	}
	if r.exprs != 8 {
		t.Errorf("%d expressions checked, want 8", r.exprs)
	}
	if want := []string{"unused_total"}; !slices.Equal(r.unused, want) {
		t.Errorf("unused %q, want %q", r.unused, want)
	}

	// Every mistake a dashboard or rule author can make is reported, with
	// where it is.
	bad := strings.NewReplacer(
		`"job:calls:rate5m"`, `"seconds"`, // a histogram's family name
		`pause_count`, `pauses_count`, // a typo
		`"id": 3`, `"id": 1`, // a duplicate panel id
		`"query": "label_values(job)"`, `"query": "metrics(calls)"`, // a variable query promqlcheck cannot read
	).Replace(dashboardJSON)
	badDash := write(t, dir, "bad.json", bad)
	badRules := write(t, dir, "bad.yml", strings.Replace(rules, "seconds_bucket", "secs_bucket", 1))
	r, err = check(metrics, []string{badRules}, []string{badDash})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		`panel "pauses": id 1 is also panel "calls"'s`,
		`variable any: "metrics(calls)" is not label_values(...) or query_result(...)`,
		`alert Slow: secs_bucket is not in`,
		`panel "calls" B: seconds is not in ` + metrics + `: a histogram's series are seconds_bucket, _sum and _count`,
		`panel "pauses" A: pauses_count is not in`,
	}
	if len(r.problems) != len(want) {
		t.Fatalf("problems:\n%s\nwant %d", strings.Join(r.problems, "\n"), len(want))
	}
	for i, w := range want {
		if !strings.Contains(r.problems[i], w) {
			t.Errorf("problem %d: %s\nwant it to hold %s", i, r.problems[i], w)
		}
	}
}

// TestRun checks the command's exit statuses and what it prints.
func TestRun(t *testing.T) {
	dir := t.TempDir()
	metrics := write(t, dir, "metrics.txt", exposition)
	rulesFile := write(t, dir, "rules.yml", rules)
	for _, tc := range []struct {
		name   string
		args   []string
		status int
		out    string
	}{
		{"ok", []string{"-metrics", metrics, "-rules", rulesFile}, 0, "2 expressions name 3 metrics"},
		{"no metrics", []string{"-rules", rulesFile}, 2, "usage"},
		{"nothing to check", []string{"-metrics", metrics}, 2, "usage"},
		{"unknown flag", []string{"-metrics", metrics, "-rules", rulesFile, "-x"}, 2, "flag provided but not defined"},
		{"missing file", []string{"-metrics", filepath.Join(dir, "none"), "-rules", rulesFile}, 1, "no such file"},
		{"invalid rules", []string{"-metrics", metrics, "-rules", write(t, dir, "invalid.yml", "groups:\n  - name: g\n    rules:\n      - record: x\n        expr: sum(\n")}, 1, "parse error"},
		{"bad exposition", []string{"-metrics", write(t, dir, "bad.txt", "calls_total{ 1\n"), "-rules", rulesFile}, 1, "bad.txt"},
		{"missing metric", []string{"-metrics", metrics, "-rules", write(t, dir, "missing.yml", strings.Replace(rules, "calls_total", "call_total", 1))}, 1, "call_total is not in"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			if got := run(tc.args, &out, &errOut); got != tc.status {
				t.Fatalf("status %d, want %d; stdout %s; stderr %s", got, tc.status, out.String(), errOut.String())
			}
			if !strings.Contains(out.String()+errOut.String(), tc.out) {
				t.Errorf("output %q %q, want %q in it", out.String(), errOut.String(), tc.out)
			}
		})
	}
}
