package version

import (
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
)

func TestFormat(t *testing.T) {
	platform := " " + runtime.GOOS + "/" + runtime.GOARCH
	rev := "5494650e8a1f3c2d4b6a7980e1f2a3b4c5d6e7f8"
	tests := []struct {
		name string
		info *debug.BuildInfo
		want string
	}{
		{"release", &debug.BuildInfo{
			GoVersion: "go1.26.8",
			Main:      debug.Module{Path: "github.com/calcrpc/calc", Version: "v1.2.0"},
			Settings:  []debug.BuildSetting{{Key: "vcs", Value: "git"}, {Key: "vcs.revision", Value: rev}, {Key: "vcs.modified", Value: "false"}},
		}, "calc v1.2.0, commit " + rev + ", go1.26.8" + platform},
		{"modified", &debug.BuildInfo{
			GoVersion: "go1.26.8",
			Main:      debug.Module{Version: "v0.0.0-20261202061547-5494650e8a1f+dirty"},
			Settings:  []debug.BuildSetting{{Key: "vcs.modified", Value: "true"}, {Key: "vcs.revision", Value: rev}},
		}, "calc v0.0.0-20261202061547-5494650e8a1f+dirty, commit " + rev + " (modified), go1.26.8" + platform},
		{"go run", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}},
			"calc (devel), commit unknown, go1.26.8" + platform},
		{"no version", &debug.BuildInfo{GoVersion: "go1.26.8"}, "calc (devel), commit unknown, go1.26.8" + platform},
		{"no build info", nil, "calc (devel), commit unknown, " + runtime.Version() + platform},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := format("calc", tt.info); got != tt.want {
				t.Fatalf("format = %q\nwant     %q", got, tt.want)
			}
		})
	}
}

// TestString checks the report of this test binary, which go test builds
// with build information but no version stamp.
func TestString(t *testing.T) {
	got := String("calcd")
	if !strings.HasPrefix(got, "calcd ") || !strings.Contains(got, ", commit ") || !strings.HasSuffix(got, runtime.GOOS+"/"+runtime.GOARCH) {
		t.Fatalf("String = %q", got)
	}
}
