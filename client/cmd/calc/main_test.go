package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

func noEnv(string) string { return "" }

func TestVersion(t *testing.T) {
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"--version"}, strings.NewReader(""), &stdout, &stderr, noEnv)
	if code != 0 || !strings.HasPrefix(stdout.String(), "calc ") || !strings.Contains(stdout.String(), ", commit ") || stderr.Len() != 0 {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, stdout.String(), stderr.String())
	}
}
