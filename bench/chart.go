package bench

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
	"math"
	"strings"
)

// Series is one line of a percentile chart.
type Series struct {
	// Label is the legend text, such as "tcp: p50 81µs, p99 320µs".
	Label string
	// Points is the latency distribution, by increasing P (Report.Percentiles).
	Points []Point
}

// chart geometry, in SVG user units.
const (
	chartW, chartH = 760, 440
	plotL, plotR   = 72, 712
	plotT, plotB   = 56, 390
)

// chartColors are the series colours, in order; they repeat past the end.
var chartColors = []string{"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"}

// WriteChart writes an SVG chart of latency (log scale) against percentile
// (log scale of 1/(1-p): p0, p90, p99 … p99.999 equally spaced), one line
// per series, the way HdrHistogram plots are drawn: the tail is as visible
// as the median.
func WriteChart(w io.Writer, title, subtitle string, series []Series) error {
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, s := range series {
		for _, p := range s.Points {
			v := math.Log10(math.Max(p.US, 0.01))
			lo, hi = math.Min(lo, v), math.Max(hi, v)
		}
	}
	if math.IsInf(lo, 1) {
		lo, hi = 0, 1
	}
	lo, hi = math.Floor(lo), math.Ceil(hi)
	if hi <= lo {
		hi = lo + 1
	}
	px := func(p float64) float64 {
		x := float64(chartDecades)
		if p < 100 {
			x = min(-math.Log10(1-p/100), chartDecades)
		}
		return plotL + x/chartDecades*(plotR-plotL)
	}
	py := func(us float64) float64 {
		v := math.Log10(math.Max(us, 0.01))
		return plotB - (v-lo)/(hi-lo)*(plotB-plotT)
	}

	var b bytes.Buffer
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", chartW, chartH, chartW, chartH)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="white"/>`+"\n", chartW, chartH)
	text(&b, chartW/2, 22, "middle", "font-size=\"16\" font-weight=\"bold\"", title)
	text(&b, chartW/2, 40, "middle", "fill=\"#555\"", subtitle)
	// Grid and axis labels.
	for d := lo; d <= hi; d++ {
		for _, m := range []float64{1, 2, 5} {
			us := m * math.Pow(10, d)
			if math.Log10(us) > hi+1e-9 {
				break
			}
			y := py(us)
			stroke := "#eee"
			if m == 1 {
				stroke = "#ccc"
			}
			fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="%s"/>`+"\n", plotL, y, plotR, y, stroke)
			text(&b, plotL-6, y+4, "end", "", FormatMicros(us))
		}
	}
	for i, label := range []string{"p0", "p90", "p99", "p99.9", "p99.99", "p99.999"} {
		x := plotL + float64(i)/chartDecades*(plotR-plotL)
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#ccc"/>`+"\n", x, plotT, x, plotB)
		text(&b, x, plotB+16, "middle", "", label)
	}
	fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#888"/>`+"\n", plotL, plotT, plotR-plotL, plotB-plotT)
	text(&b, (plotL+plotR)/2, plotB+36, "middle", "", "percentile (log scale of 1/(1-p))")
	fmt.Fprintf(&b, `<text x="16" y="%d" text-anchor="middle" transform="rotate(-90 16 %d)">latency (log scale)</text>`+"\n", (plotT+plotB)/2, (plotT+plotB)/2)
	// Lines and legend.
	for i, s := range series {
		color := chartColors[i%len(chartColors)]
		pts := make([]string, len(s.Points))
		for j, p := range s.Points {
			pts[j] = fmt.Sprintf("%.1f,%.1f", px(p.P), py(p.US))
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`+"\n", color, strings.Join(pts, " "))
		y := plotT + 18 + 18*i
		fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="3"/>`+"\n", plotL+10, y-4, plotL+34, y-4, color)
		text(&b, plotL+40, float64(y), "start", "", s.Label)
	}
	b.WriteString("</svg>\n")
	_, err := w.Write(b.Bytes())
	return err
}

// text writes an SVG text element with s escaped.
func text(b *bytes.Buffer, x, y float64, anchor, attrs, s string) {
	fmt.Fprintf(b, `<text x="%.1f" y="%.1f" text-anchor="%s" %s>`, x, y, anchor, attrs)
	_ = xml.EscapeText(b, []byte(s))
	b.WriteString("</text>\n")
}
