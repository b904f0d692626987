package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
)

// runMeta is what every results file's meta record holds: when, which
// commit (and whether the tree was dirty), the machine, the load average at
// the start and the command.
type runMeta struct {
	Date      string `json:"date"`
	Commit    string `json:"commit"`
	Dirty     bool   `json:"dirty"`
	NProc     int    `json:"nproc"`
	CPUModel  string `json:"cpu_model"`
	LoadStart string `json:"load_start"`
	Command   string `json:"command"`
}

// readResults reads a benchmark script's results file: JSON lines, a
// "meta" record, "run" records and an "end" record with the load average.
// It hands the meta record and each run record to meta and run, and
// returns the end record's load average.
func readResults(file string, meta, run func(line []byte) error) (loadEnd string, err error) {
	f, err := os.Open(file)
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		var kind struct {
			Kind    string `json:"kind"`
			LoadEnd string `json:"load_end"`
		}
		err := json.Unmarshal(line, &kind)
		if err == nil {
			switch kind.Kind {
			case "meta":
				err = meta(line)
			case "run":
				err = run(line)
			case "end":
				loadEnd = kind.LoadEnd
			default:
				err = fmt.Errorf("unknown record kind %q", kind.Kind)
			}
		}
		if err != nil {
			return "", fmt.Errorf("%s:%d: %w", file, n, err)
		}
	}
	return loadEnd, sc.Err()
}

// commitLoad formats a caption's commit (12 digits, "+dirty" for a dirty
// tree) and its load-average clause ("; load average … at the start, … at
// the end", or "" when unknown).
func commitLoad(commit string, dirty bool, loadStart, loadEnd string) (string, string) {
	if len(commit) > 12 {
		commit = commit[:12]
	}
	if dirty {
		commit += "+dirty"
	}
	load := ""
	if loadStart != "" {
		load = "; load average (1, 5, 15 min) " + loadStart + " at the start"
		if loadEnd != "" {
			load += ", " + loadEnd + " at the end"
		}
	}
	return commit, load
}
