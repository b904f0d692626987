// Package version reports which build of a calc program is running: the
// main module's version, the version-control commit it was built from and
// the Go toolchain, as the go command records them in every binary it
// builds (runtime/debug.ReadBuildInfo). The programs print it for
// --version.
package version

import (
	"runtime"
	"runtime/debug"
	"strings"
)

// String returns program's version report, one line without a newline:
//
//	calc v1.2.0, commit 5494650e8a1f3c2d4b6a7980e1f2a3b4c5d6e7f8, go1.26.8 linux/amd64
//	calcd (devel), commit 5494650e8a1f3c2d4b6a7980e1f2a3b4c5d6e7f8 (modified), go1.26.8 linux/amd64
//
// The version is the main module's, "(devel)" when the go command did not
// stamp one (go run, go test); the commit is "unknown" when the binary was
// not built inside a git checkout, and "(modified)" marks a build from a
// working tree with uncommitted changes.
func String(program string) string {
	info, _ := debug.ReadBuildInfo()
	return format(program, info)
}

// format builds String's report from info, which may be nil.
func format(program string, info *debug.BuildInfo) string {
	version, revision, modified, goVersion := "", "", false, runtime.Version()
	if info != nil {
		version = info.Main.Version
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				revision = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
		if info.GoVersion != "" {
			goVersion = info.GoVersion
		}
	}
	if version == "" {
		version = "(devel)"
	}
	if revision == "" {
		revision = "unknown"
	}
	var b strings.Builder
	b.WriteString(program + " " + version + ", commit " + revision)
	if modified {
		b.WriteString(" (modified)")
	}
	b.WriteString(", " + goVersion + " " + runtime.GOOS + "/" + runtime.GOARCH)
	return b.String()
}
