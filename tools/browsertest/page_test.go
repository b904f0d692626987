// Package browsertest drives calc's web page (server/webui) in headless
// Chromium against a real calcd, with chromedp: expressions evaluated with
// the Connect protocol, an error marked where the server says it is, the
// history, CalculateStream over the WebSocket transport, a phone-sized
// screen, a bearer token, and no console error from any of it.
//
// It is a module of its own so that chromedp and the Chrome DevTools
// protocol's generated code stay out of calcd's go.mod. Run it with
// scripts/browser-test.sh, which installs Chromium and builds calcd:
//
//	CALCD=bin/calcd CHROMIUM=/usr/bin/chromium go test ./...
package browsertest

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// calcd is a calcd process serving on loopback.
type calcd struct {
	HTTPAddr string
}

// startCalcd runs $CALCD on free loopback ports with args and returns its
// HTTP address; when the test ends it is stopped with SIGTERM, and must
// exit 0.
func startCalcd(t *testing.T, args ...string) *calcd {
	t.Helper()
	bin := os.Getenv("CALCD")
	if bin == "" {
		t.Fatal("CALCD must name a calcd binary: run scripts/browser-test.sh")
	}
	cmd := exec.Command(bin, append([]string{"--grpc-addr", "127.0.0.1:0", "--tcp-addr", "127.0.0.1:0",
		"--http-addr", "127.0.0.1:0", "--log-format", "json"}, args...)...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	addr := make(chan string, 1)
	var logMu sync.Mutex
	var logTail []string
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			var rec struct{ Msg, Transport, Addr string }
			if json.Unmarshal(sc.Bytes(), &rec) == nil && rec.Msg == "listening" && rec.Transport == "http" {
				addr <- rec.Addr
			}
			logMu.Lock()
			logTail = append(logTail, sc.Text())
			logMu.Unlock()
		}
		_, _ = io.Copy(io.Discard, stderr)
		exited <- cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("calcd exited with %v", err)
			}
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			t.Errorf("calcd did not exit within 15 s of SIGTERM")
		}
		if t.Failed() {
			logMu.Lock()
			t.Logf("calcd's log:\n%s", strings.Join(logTail, "\n"))
			logMu.Unlock()
		}
	})
	select {
	case a := <-addr:
		return &calcd{HTTPAddr: a}
	case err := <-exited:
		t.Fatalf("calcd exited before listening: %v", err)
	case <-time.After(15 * time.Second):
		t.Fatal("calcd logged no HTTP address within 15 s")
	}
	return nil
}

// console collects what the page writes to the console: calls of the
// console API, uncaught exceptions and the browser's log.
type console struct {
	ctx      context.Context
	mu       sync.Mutex
	messages []chromedp.ConsoleMessage
	marks    chan string // the text of console.info calls: sync's marks
}

// browser starts headless Chromium ($CHROMIUM, or chromium on PATH) and
// returns a context for one tab, with its console collected.
func browser(t *testing.T) (context.Context, *console) {
	t.Helper()
	path := os.Getenv("CHROMIUM")
	if path == "" {
		var err error
		if path, err = exec.LookPath("chromium"); err != nil {
			t.Fatal("no chromium on PATH and CHROMIUM unset: run scripts/browser-test.sh, which installs it")
		}
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.Headless,
		chromedp.Flag("disable-gpu", true), chromedp.WindowSize(1200, 900))
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox) // Chromium's sandbox refuses to run as root
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(cancel)
	if err := chromedp.Do(ctx); err != nil { // starts the browser and opens the tab
		t.Fatalf("starting Chromium: %v", err)
	}
	c := &console{ctx: ctx, marks: make(chan string, 16)}
	messages := chromedp.Console(ctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return // the tab has closed
			}
			if m.Type == chromedp.ConsoleInfo && strings.HasPrefix(m.Text, "browsertest-sync ") {
				c.marks <- m.Text
				continue
			}
			c.mu.Lock()
			c.messages = append(c.messages, m)
			c.mu.Unlock()
		}
	}()
	return ctx, c
}

// sync waits until every message the page wrote so far has been collected:
// it writes a mark to the console and waits for it to come through.
func (c *console) sync(t *testing.T) {
	t.Helper()
	mark := fmt.Sprintf("browsertest-sync %d", time.Now().UnixNano())
	if _, err := chromedp.Run(c.ctx, chromedp.Evaluate[chromedp.Void](`console.info(`+strconv.Quote(mark)+`)`)); err != nil {
		t.Fatal(err)
	}
	timeout := time.After(10 * time.Second)
	for {
		select {
		case m := <-c.marks:
			if m == mark {
				return
			}
		case <-timeout:
			t.Fatal("the console's messages did not come through within 10 s")
		}
	}
}

// errors returns the console's errors, warnings and exceptions, but for
// the browser's own network log of the answers the test asked for (an
// Evaluate that fails answers HTTP 400, and Chromium logs every 4xx).
func (c *console) errors(t *testing.T, expectedStatus ...string) []string {
	c.sync(t)
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, m := range c.messages {
		if m.Type != chromedp.ConsoleError && m.Type != chromedp.ConsoleWarning && !m.IsException() {
			continue
		}
		expected := false
		for _, s := range expectedStatus {
			if m.Source == "network" && strings.HasSuffix(m.URL, "/calculator.v1.CalculatorService/Evaluate") &&
				strings.Contains(m.Text, "status of "+s) {
				expected = true
			}
		}
		if !expected {
			out = append(out, fmt.Sprintf("%s (source %q, %s:%d)", m, m.Source, m.URL, m.Line))
		}
	}
	return out
}

// evaluate types expr, presses =, and waits for the history to hold n
// calls (the one just made included).
func evaluate(ctx context.Context, expr string, n int) error {
	return chromedp.Do(ctx,
		chromedp.SetValue(chromedp.ID("expr"), expr),
		chromedp.Click(chromedp.ID("eval")),
		poll(fmt.Sprintf(`document.querySelectorAll("#history li").length === %d && !document.querySelector("#eval").disabled`, n)),
	)
}

// poll waits, up to 20 s, for a JavaScript predicate.
func poll(predicate string) chromedp.Action[chromedp.Void] {
	return chromedp.Poll[chromedp.Void](predicate, chromedp.WithPollingInterval(20*time.Millisecond), chromedp.WithPollingTimeout(20*time.Second))
}

// js evaluates expression in the page.
func js[T any](t *testing.T, ctx context.Context, expression string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expression))
	if err != nil {
		t.Fatalf("%s: %v", expression, err)
	}
	return v
}

// screenshot saves the page as name.png in $BROWSERTEST_SCREENSHOTS, when set.
func screenshot(t *testing.T, ctx context.Context, name string) {
	dir := os.Getenv("BROWSERTEST_SCREENSHOTS")
	if dir == "" {
		return
	}
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Errorf("screenshot %s: %v", name, err)
		return
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		t.Error(err)
	}
}

// TestPage loads the page from a real calcd, evaluates expressions (with
// the Connect protocol), checks each result, an error's mark and the
// history, runs CalculateStream over the WebSocket transport, and checks
// that a phone-sized screen needs no horizontal scrolling and that the
// console stayed free of errors.
func TestPage(t *testing.T) {
	srv := startCalcd(t)
	ctx, con := browser(t)
	if err := chromedp.Do(ctx, chromedp.Navigate("http://"+srv.HTTPAddr+"/"), chromedp.WaitVisible(chromedp.ID("expr"))); err != nil {
		t.Fatal(err)
	}

	n := 0
	for _, c := range []struct{ expr, want string }{
		{"2 * (3 + 4) - 10 / 4", "11.5"},
		{"0.1 + 0.2", "0.3"},
		{"7 / 2", "3.5"},
		{"-2 ^ 2 + 2 ^ -1", "-3.5"},
		{"1 / 3", "0.3333333333333333333333333333333333(rounded to 34 digits)"},
	} {
		n++
		if err := evaluate(ctx, c.expr, n); err != nil {
			t.Fatalf("%s: %v", c.expr, err)
		}
		if got := js[string](t, ctx, `document.querySelector("#result").textContent`); got != c.want {
			t.Errorf("%s = %q, want %q", c.expr, got, c.want)
		}
		if js[bool](t, ctx, `!document.querySelector("#error").hidden`) {
			t.Errorf("%s: the error box shows", c.expr)
		}
	}

	// Errors: the message, and a mark on the character at the (byte)
	// offset the server reported, or after the end.
	for _, c := range []struct{ expr, offset, marked, text string }{
		{"2 * (3 + 4", "4", "(", "INVALID_ARGUMENT: unbalanced '(' at offset 4"},
		{"1 + 2 / 0", "6", "/", "INVALID_ARGUMENT: division by zero at offset 6"},
		{"1 + ", "4", "", "INVALID_ARGUMENT: "},
		{"1 ÷ 2", "2", "÷", "INVALID_ARGUMENT: unexpected character"},
	} {
		n++
		if err := evaluate(ctx, c.expr, n); err != nil {
			t.Fatalf("%s: %v", c.expr, err)
		}
		text := js[string](t, ctx, `document.querySelector("#error-text").textContent`)
		offset := js[string](t, ctx, `document.querySelector("#error-mark")?.dataset.offset ?? "none"`)
		marked := js[string](t, ctx, `document.querySelector("#error-mark")?.textContent ?? "none"`)
		where := js[string](t, ctx, `document.querySelector("#error-where").textContent`)
		if !strings.HasPrefix(text, c.text) || offset != c.offset || marked != c.marked || where != c.expr {
			t.Errorf("%s: error %q, mark %q at offset %s in %q; want %q…, mark %q at offset %s", c.expr, text, marked, offset, where, c.text, c.marked, c.offset)
		}
		if js[string](t, ctx, `document.querySelector("#expr").getAttribute("aria-invalid")`) != "true" {
			t.Errorf("%s: the input is not marked invalid", c.expr)
		}
		if js[string](t, ctx, `document.querySelector("#result").textContent`) != "" {
			t.Errorf("%s: a result shows with the error", c.expr)
		}
	}
	screenshot(t, ctx, "desktop-error")

	// The history: newest first, every call, each with its answer; a click
	// puts its expression back.
	history := js[[]string](t, ctx, `[...document.querySelectorAll("#history li")].map(li => li.textContent)`)
	want := []string{"1 ÷ 2 = INVALID_ARGUMENT", "1 +  = INVALID_ARGUMENT", "1 + 2 / 0 = INVALID_ARGUMENT", "2 * (3 + 4 = INVALID_ARGUMENT",
		"1 / 3 = 0.3333333333333333333333333333333333", "-2 ^ 2 + 2 ^ -1 = -3.5", "7 / 2 = 3.5", "0.1 + 0.2 = 0.3", "2 * (3 + 4) - 10 / 4 = 11.5"}
	if strings.Join(history, "\n") != strings.Join(want, "\n") {
		t.Errorf("history:\n%s\nwant:\n%s", strings.Join(history, "\n"), strings.Join(want, "\n"))
	}
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS("#history li:last-child button"))); err != nil {
		t.Fatal(err)
	}
	if got := js[string](t, ctx, `document.querySelector("#expr").value`); got != "2 * (3 + 4) - 10 / 4" {
		t.Errorf("after a click on the oldest call the input holds %q", got)
	}

	// CalculateStream over the WebSocket: 2000 multiplications, then 10
	// divisions by zero, each answered in the stream with its error.
	runStream := func(count, op, rhs string) {
		t.Helper()
		err := chromedp.Do(ctx,
			chromedp.SetValue(chromedp.ID("stream-count"), count),
			chromedp.SetValue(chromedp.ID("stream-op"), op),
			chromedp.SetValue(chromedp.ID("stream-rhs"), rhs),
			chromedp.Click(chromedp.ID("stream-run")),
			poll(`document.querySelector("#stream-status").textContent.startsWith("done") || document.querySelector("#stream-status").textContent.startsWith("failed")`),
		)
		if err != nil {
			t.Fatalf("stream %s %s %s: %v", count, op, rhs, err)
		}
	}
	stream := func() []string {
		return js[[]string](t, ctx, `["status", "received", "errors", "last"].map(k => document.querySelector("#stream-" + k).textContent)`)
	}
	runStream("2000", "MULTIPLY", "3")
	if got, want := stream(), []string{"done: 2000 answers", "2000 / 2000", "0", "#2000: 6000"}; strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("stream panel %q, want %q", got, want)
	}
	runStream("10", "DIVIDE", "0")
	if got, want := stream(), []string{"done: 10 answers", "10 / 10", "10", "#10: INVALID_ARGUMENT division by zero: 10 / 0"}; strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("stream panel %q, want %q", got, want)
	}
	screenshot(t, ctx, "desktop-stream")

	// A phone-sized screen (390 x 844 CSS pixels): after a long result and a
	// long expression's error, nothing is wider than the screen.
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(3), chromedp.EmulateMobile)); err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("123456789 * ", 30) + "("
	for _, expr := range []string{"1 / 7", long} {
		n++
		if err := evaluate(ctx, expr, n); err != nil {
			t.Fatalf("%s: %v", expr, err)
		}
		overflow := js[[]int](t, ctx, `[document.documentElement.scrollWidth, document.documentElement.clientWidth, window.innerWidth]`)
		if overflow[0] > overflow[1] || overflow[1] > 390 {
			t.Errorf("phone screen after %.20q…: page %d px wide in a %d px viewport (window %d)", expr, overflow[0], overflow[1], overflow[2])
		}
	}
	screenshot(t, ctx, "phone")

	if errs := con.errors(t, "400"); len(errs) > 0 {
		t.Errorf("the console has errors:\n%s", strings.Join(errs, "\n"))
	}
}

// TestPageToken: against a calcd that requires a token, a call without one
// shows UNAUTHENTICATED, and with the token field filled both Evaluate
// (fetch) and the stream (the token in each call's metadata over the
// WebSocket) work.
func TestPageToken(t *testing.T) {
	raw := make([]byte, 16)
	_, _ = rand.Read(raw)
	token := hex.EncodeToString(raw)
	sum := sha256.Sum256([]byte(token))
	policy := filepath.Join(t.TempDir(), "policy.json")
	if err := os.WriteFile(policy, []byte(`{"principals":[{"name":"page","token_sha256":"`+hex.EncodeToString(sum[:])+`","methods":["/calculator.v1.CalculatorService/*"]}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := startCalcd(t, "--auth-tokens", policy)
	ctx, con := browser(t)
	if err := chromedp.Do(ctx, chromedp.Navigate("http://"+srv.HTTPAddr+"/"), chromedp.WaitVisible(chromedp.ID("expr"))); err != nil {
		t.Fatal(err)
	}
	if err := evaluate(ctx, "6 * 7", 1); err != nil {
		t.Fatal(err)
	}
	if got := js[string](t, ctx, `document.querySelector("#error-text").textContent`); !strings.HasPrefix(got, "UNAUTHENTICATED: ") {
		t.Errorf("without a token: %q, want UNAUTHENTICATED", got)
	}
	err := chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS("details summary")),
		chromedp.SetValue(chromedp.ID("token"), token),
		chromedp.SetValue(chromedp.ID("stream-count"), "100"),
		chromedp.Click(chromedp.ID("stream-run")),
		poll(`document.querySelector("#stream-status").textContent.startsWith("done") || document.querySelector("#stream-status").textContent.startsWith("failed")`),
	)
	if err != nil {
		t.Fatal(err)
	}
	if got := js[string](t, ctx, `document.querySelector("#stream-status").textContent`); got != "done: 100 answers" {
		t.Errorf("stream with the token: %q", got)
	}
	if err := evaluate(ctx, "6 * 7", 2); err != nil {
		t.Fatal(err)
	}
	if got := js[string](t, ctx, `document.querySelector("#result").textContent`); got != "42" {
		t.Errorf("with the token: %q, want 42", got)
	}
	if errs := con.errors(t, "401"); len(errs) > 0 {
		t.Errorf("the console has errors:\n%s", strings.Join(errs, "\n"))
	}
}
