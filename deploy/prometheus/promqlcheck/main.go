// Command promqlcheck checks that every metric a Prometheus rule file or a
// Grafana dashboard names exists: it parses each PromQL expression with
// Prometheus's own parser, collects the metric name of every selector, and
// looks each up in a /metrics exposition (a histogram's series as
// NAME_bucket, NAME_sum and NAME_count, a summary's as NAME, NAME_sum and
// NAME_count), among the series the rule files record, or among those
// Prometheus makes itself (up, scrape_*, ALERTS).
//
// Usage:
//
//	promqlcheck -metrics FILE [-rules FILE]... [-dashboard FILE]...
//
// A Grafana dashboard's expressions are its panels' targets (rows'
// panels included) and its query variables (label_values(SELECTOR, LABEL)
// and query_result(EXPR)); Grafana's interval variables ($__rate_interval,
// $__interval, $__range) stand for 5m while parsing, and other variables
// may appear only inside label matchers' strings. The dashboard must also
// hold unique panel ids and a refId on every target.
//
// It prints what it checked and exits 0, or prints each problem, with the
// file and expression, and exits 1; 2 is a usage error.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strings"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
)

// files is a repeatable flag.
type files []string

func (f *files) String() string     { return strings.Join(*f, ",") }
func (f *files) Set(v string) error { *f = append(*f, v); return nil }

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is main with its arguments and outputs, returning the exit status.
func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("promqlcheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	metricsFile := fs.String("metrics", "", "`file` holding a /metrics exposition (text format)")
	var rules, dashboards files
	fs.Var(&rules, "rules", "Prometheus rule `file` (repeatable)")
	fs.Var(&dashboards, "dashboard", "Grafana dashboard JSON `file` (repeatable)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *metricsFile == "" || fs.NArg() > 0 || len(rules)+len(dashboards) == 0 {
		fmt.Fprintln(stderr, "usage: promqlcheck -metrics FILE [-rules FILE]... [-dashboard FILE]...")
		return 2
	}
	r, err := check(*metricsFile, rules, dashboards)
	if err != nil {
		fmt.Fprintln(stderr, "promqlcheck:", err)
		return 1
	}
	for _, p := range r.problems {
		fmt.Fprintln(stderr, "promqlcheck:", p)
	}
	if len(r.problems) > 0 {
		fmt.Fprintf(stderr, "promqlcheck: %d problems\n", len(r.problems))
		return 1
	}
	fmt.Fprintf(stdout, "promqlcheck: %d expressions name %d metrics, each exported (or recorded by the rules)\n", r.exprs, len(r.used))
	if len(r.unused) > 0 {
		fmt.Fprintf(stdout, "promqlcheck: exported but named by none (go_* and process_* aside): %s\n", strings.Join(r.unused, " "))
	}
	return 0
}

// report is what check found.
type report struct {
	exprs    int             // expressions checked
	used     map[string]bool // metric names they name
	unused   []string        // exported families none names, sorted, but the Go runtime's and the process's
	problems []string
}

// synthetic are the series Prometheus makes itself rather than scrapes.
var synthetic = map[string]bool{
	"up": true, "scrape_duration_seconds": true, "scrape_samples_scraped": true,
	"scrape_samples_post_metric_relabeling": true, "scrape_series_added": true,
	"ALERTS": true, "ALERTS_FOR_STATE": true,
}

// source is one expression and where it was found.
type source struct {
	where, expr string
}

// check reads the exposition, the rule files and the dashboards, and
// reports every metric name their expressions use that none of them
// provides. An unreadable or malformed file is an error.
func check(metricsFile string, ruleFiles, dashboardFiles []string) (report, error) {
	r := report{used: map[string]bool{}}
	f, err := os.Open(metricsFile)
	if err != nil {
		return r, err
	}
	exported, families, err := exportedNames(f)
	f.Close()
	if err != nil {
		return r, fmt.Errorf("%s: %w", metricsFile, err)
	}
	var exprs []source
	recorded := map[string]bool{}
	for _, file := range ruleFiles {
		e, rec, err := ruleExprs(file)
		if err != nil {
			return r, err
		}
		exprs = append(exprs, e...)
		for name := range rec {
			recorded[name] = true
		}
	}
	for _, file := range dashboardFiles {
		e, problems, err := dashboardExprs(file)
		if err != nil {
			return r, err
		}
		exprs = append(exprs, e...)
		r.problems = append(r.problems, problems...)
	}
	r.exprs = len(exprs)
	usedFamilies := map[string]bool{}
	for _, s := range exprs {
		names, err := metricNames(s.expr)
		if err != nil {
			r.problems = append(r.problems, fmt.Sprintf("%s: %v in %q", s.where, err, s.expr))
			continue
		}
		for _, name := range names {
			r.used[name] = true
			switch {
			case exported[name] != "":
				usedFamilies[exported[name]] = true
			case recorded[name], synthetic[name]:
			default:
				r.problems = append(r.problems, fmt.Sprintf("%s: %s is not in %s%s (in %q)", s.where, name, metricsFile, hint(name, exported), s.expr))
			}
		}
	}
	for _, fam := range families {
		if !usedFamilies[fam] && !strings.HasPrefix(fam, "go_") && !strings.HasPrefix(fam, "process_") {
			r.unused = append(r.unused, fam)
		}
	}
	return r, nil
}

// hint suggests the series a histogram's or summary's family name stands
// for, when name is one.
func hint(name string, exported map[string]string) string {
	if exported[name+"_bucket"] != "" {
		return ": a histogram's series are " + name + "_bucket, _sum and _count"
	}
	return ""
}

// exportedNames reads a text exposition and returns the name of every
// series it may hold, each mapped to its family, and the families' names,
// sorted.
func exportedNames(r io.Reader) (map[string]string, []string, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(r)
	if err != nil {
		return nil, nil, err
	}
	names := map[string]string{}
	var families []string
	for name, f := range fams {
		families = append(families, name)
		switch f.GetType() {
		case dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM:
			for _, s := range []string{"_bucket", "_sum", "_count"} {
				names[name+s] = name
			}
		case dto.MetricType_SUMMARY:
			for _, s := range []string{"", "_sum", "_count"} {
				names[name+s] = name
			}
		default:
			names[name] = name
		}
	}
	slices.Sort(families)
	return names, families, nil
}

// promql parses as Prometheus does by default.
var promql = parser.NewParser(parser.Options{})

// ruleExprs parses a rule file as Prometheus does (rulefmt, which also
// checks every expression, label and template) and returns its
// expressions and the names its recording rules record.
func ruleExprs(file string) ([]source, map[string]bool, error) {
	groups, errs := rulefmt.ParseFile(file, false, model.UTF8Validation, promql, nil)
	if len(errs) > 0 {
		return nil, nil, errors.Join(errs...)
	}
	var exprs []source
	recorded := map[string]bool{}
	for _, g := range groups.Groups {
		for _, rule := range g.Rules {
			name := rule.Record
			if name == "" {
				name = "alert " + rule.Alert
			} else {
				recorded[rule.Record] = true
			}
			exprs = append(exprs, source{where: fmt.Sprintf("%s: group %s: %s", file, g.Name, name), expr: rule.Expr})
		}
	}
	return exprs, recorded, nil
}

// dashboard is the part of a Grafana dashboard that holds queries.
type dashboard struct {
	Title      string  `json:"title"`
	UID        string  `json:"uid"`
	Panels     []panel `json:"panels"`
	Templating struct {
		List []variable `json:"list"`
	} `json:"templating"`
}

// panel is a dashboard panel: its queries, and a row's panels.
type panel struct {
	ID      *int   `json:"id"`
	Title   string `json:"title"`
	Type    string `json:"type"`
	Targets []struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	} `json:"targets"`
	Panels []panel `json:"panels"` // a collapsed row's
}

// variable is a dashboard variable; a query variable's query is a string
// or an object holding one.
type variable struct {
	Name  string          `json:"name"`
	Type  string          `json:"type"`
	Query json.RawMessage `json:"query"`
}

// intervalVars are Grafana's interval variables, which stand in PromQL's
// range and offset positions.
var intervalVars = regexp.MustCompile(`\$(__rate_interval|__interval|__range)\b|\$\{(__rate_interval|__interval|__range)\}`)

// Grafana's Prometheus variable queries.
var (
	labelValues = regexp.MustCompile(`^\s*label_values\((.*),\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)\s*$`)
	labelOnly   = regexp.MustCompile(`^\s*label_values\(\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)\s*$`)
	queryResult = regexp.MustCompile(`^\s*query_result\((.*)\)\s*$`)
)

// dashboardExprs reads a Grafana dashboard and returns its PromQL
// expressions, and the problems of its structure: panels without a unique
// id, targets without a refId or an expression, a variable query it cannot
// read.
func dashboardExprs(file string) ([]source, []string, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, nil, err
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", file, err)
	}
	var exprs []source
	var problems []string
	if d.Title == "" || d.UID == "" {
		problems = append(problems, file+": the dashboard needs a title and a uid")
	}
	ids := map[int]string{}
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			where := fmt.Sprintf("%s: panel %q", file, p.Title)
			switch {
			case p.ID == nil:
				problems = append(problems, where+": no id")
			case ids[*p.ID] != "":
				problems = append(problems, fmt.Sprintf("%s: id %d is also panel %q's", where, *p.ID, ids[*p.ID]))
			default:
				ids[*p.ID] = p.Title
			}
			if p.Type != "row" && len(p.Targets) == 0 {
				problems = append(problems, where+": no query")
			}
			for _, t := range p.Targets {
				if t.RefID == "" || strings.TrimSpace(t.Expr) == "" {
					problems = append(problems, where+": a target without refId or expr")
					continue
				}
				exprs = append(exprs, source{where: where + " " + t.RefID, expr: intervalVars.ReplaceAllString(t.Expr, "5m")})
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		where := fmt.Sprintf("%s: variable %s", file, v.Name)
		var q string
		if err := json.Unmarshal(v.Query, &q); err != nil {
			var obj struct {
				Query string `json:"query"`
			}
			if err := json.Unmarshal(v.Query, &obj); err != nil {
				problems = append(problems, where+": query is neither a string nor an object with a query")
				continue
			}
			q = obj.Query
		}
		switch {
		case labelOnly.MatchString(q):
			// label_values(label) names no metric.
		case labelValues.MatchString(q):
			exprs = append(exprs, source{where: where, expr: labelValues.FindStringSubmatch(q)[1]})
		case queryResult.MatchString(q):
			exprs = append(exprs, source{where: where, expr: intervalVars.ReplaceAllString(queryResult.FindStringSubmatch(q)[1], "5m")})
		default:
			problems = append(problems, fmt.Sprintf("%s: %q is not label_values(...) or query_result(...)", where, q))
		}
	}
	return exprs, problems, nil
}

// metricNames parses a PromQL expression and returns the metric names its
// selectors name, in order, each once. A selector whose name is not a
// literal (a regular expression on __name__) is an error: it cannot be
// checked.
func metricNames(expr string) ([]string, error) {
	e, err := promql.ParseExpr(expr)
	if err != nil {
		return nil, err
	}
	var names []string
	var bad error
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		vs, ok := n.(*parser.VectorSelector)
		if !ok {
			return nil
		}
		name := vs.Name
		if name == "" {
			for _, m := range vs.LabelMatchers {
				if m.Name == labels.MetricName {
					if m.Type != labels.MatchEqual {
						bad = fmt.Errorf("selector %s matches metric names by pattern", vs)
					}
					name = m.Value
				}
			}
		}
		if name != "" && !slices.Contains(names, name) {
			names = append(names, name)
		}
		return nil
	})
	return names, bad
}
