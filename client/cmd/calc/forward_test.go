//go:build unix

package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestBenchForwarding runs a built calc's bench subcommand against a stand-in
// calc-bench that prints its arguments and exits 3.
func TestBenchForwarding(t *testing.T) {
	bin, elsewhere, empty := t.TempDir(), t.TempDir(), t.TempDir()
	calc := filepath.Join(bin, "calc")
	if out, err := exec.Command("go", "build", "-o", calc, ".").CombinedOutput(); err != nil {
		t.Fatalf("building calc: %v\n%s", err, out)
	}
	standIn := func(dir, where string) {
		script := "#!/bin/sh\necho " + where + "\nprintf '%s\\n' \"$@\"\nexit 3\n"
		if err := os.WriteFile(filepath.Join(dir, "calc-bench"), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	args := []string{"bench", "--json", "--rpc", "two words", "--count=5"}
	forwarded := "two words\n"
	tests := []struct {
		name   string
		setup  func()
		path   string // PATH
		stdout string
		stderr string // a part of it
		code   int
	}{
		{name: "missing", path: empty, stderr: "go build -o bin/calc-bench ./bench/cmd/calc-bench\n", code: 2},
		{name: "in PATH", setup: func() { standIn(elsewhere, "path") }, path: elsewhere, stdout: "path\n--json\n--rpc\n" + forwarded + "--count=5\n", code: 3},
		{name: "next to calc", setup: func() { standIn(bin, "next") }, path: elsewhere, stdout: "next\n--json\n--rpc\n" + forwarded + "--count=5\n", code: 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.setup != nil {
				tt.setup()
			}
			cmd := exec.Command(calc, args...)
			cmd.Env = append(os.Environ(), "PATH="+tt.path)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			code := 0
			var exit *exec.ExitError
			if err := cmd.Run(); errors.As(err, &exit) {
				code = exit.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tt.code || stdout.String() != tt.stdout || !bytes.Contains(stderr.Bytes(), []byte(tt.stderr)) {
				t.Fatalf("exit %d, stdout %q, stderr %q; want %d, %q, stderr with %q", code, stdout.String(), stderr.String(), tt.code, tt.stdout, tt.stderr)
			}
		})
	}
}
