package main

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
)

// benchProgram is the load tool that calc bench runs.
const benchProgram = "calc-bench"

// runBench is calc bench: it runs calc-bench with args, found next to the
// calc executable or else in PATH, so calc bench takes calc-bench's flags
// and prints its output. If calc-bench cannot be found or started it
// says how to build it and returns 2.
func runBench(args []string, stderr io.Writer) int {
	exe, err := os.Executable()
	if err == nil {
		exe, err = filepath.EvalSymlinks(exe)
	}
	if err != nil {
		exe = ""
	}
	path, err := findBench(exe)
	if err != nil {
		fmt.Fprintf(stderr, "calc: calc bench runs the load tool %s, which is neither next to calc nor in PATH; build it with:\n\tgo build -o bin/%s ./bench/cmd/%s\n", benchProgram, benchProgram, benchProgram)
		return 2
	}
	code, err := execBench(path, args)
	if err != nil {
		fmt.Fprintf(stderr, "calc: running %s: %v\n", path, err)
		return 2
	}
	return code
}

// findBench returns the path of the calc-bench executable in the directory
// of exe, the running calc (if not empty), or else in PATH.
func findBench(exe string) (string, error) {
	if exe != "" {
		name := benchProgram
		if runtime.GOOS == "windows" {
			name += ".exe"
		}
		if path, err := exec.LookPath(filepath.Join(filepath.Dir(exe), name)); err == nil {
			return path, nil
		}
	}
	return exec.LookPath(benchProgram)
}
