package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, the unit of the CPU times in /proc/PID/stat: 100
// on every Linux architecture Go supports.
const clockTicks = 100

// Server names a server process to probe during a run. A zero field
// disables its probe.
type Server struct {
	// PID is the server's process id: its CPU time and RSS are read from
	// /proc/PID (Linux).
	PID int
	// PprofAddr is the host:port of the server's net/http/pprof endpoint:
	// its cumulative heap allocation count is read from
	// /debug/pprof/heap?debug=1 (runtime.MemStats.Mallocs, exact).
	PprofAddr string
}

// Snapshotter returns a Config.Snapshot that reads the bytes counted by bc
// (if not nil), this process's CPU time and srv's counters.
//
// Reading the server's allocation count makes the server allocate too
// (about 500 objects to serve the heap profile): the first read is done
// twice to measure that, and every read's own share is subtracted, so that
// between two snapshots only the load's allocations (and the server's
// background ones) remain.
func Snapshotter(bc *ByteCounter, srv Server) func() (Counters, error) {
	var reads, perRead uint64
	return func() (Counters, error) {
		var c Counters
		if bc != nil {
			c.BytesRead, c.BytesWritten = bc.Totals()
		}
		var err error
		if c.CPU, err = SelfCPU(); err != nil {
			return c, err
		}
		if srv.PID != 0 {
			if c.ServerCPU, err = ProcCPU(srv.PID); err != nil {
				return c, err
			}
		}
		if srv.PprofAddr == "" {
			return c, nil
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		m, err := Mallocs(ctx, srv.PprofAddr)
		if err != nil {
			return c, err
		}
		if reads == 0 { // a second read right away costs the server one read
			m2, err := Mallocs(ctx, srv.PprofAddr)
			if err != nil {
				return c, err
			}
			perRead, m, reads = m2-m, m2, 1
		}
		reads++
		c.ServerMallocs = m - min(reads*perRead, m)
		return c, nil
	}
}

// ProcCPU returns the user plus system CPU time of process pid, all its
// threads, from /proc/PID/stat (10 ms resolution).
func ProcCPU(pid int) (time.Duration, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return parseStatCPU(data)
}

// parseStatCPU extracts utime + stime from the contents of /proc/PID/stat.
func parseStatCPU(data []byte) (time.Duration, error) {
	// The command name (field 2) is in parentheses and may hold spaces;
	// fields 14 and 15, utime and stime, are the 12th and 13th after it.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, errors.New("bench: malformed /proc stat")
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 13 {
		return 0, errors.New("bench: short /proc stat")
	}
	var ticks int64
	for _, s := range f[11:13] {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("bench: /proc stat: %w", err)
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / clockTicks, nil
}

// ProcRSS returns the resident set size of process pid in bytes, VmRSS in
// /proc/PID/status.
func ProcRSS(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return parseVmRSS(f)
}

// parseVmRSS finds the VmRSS line ("VmRSS:  1234 kB") of a /proc status
// file and returns it in bytes.
func parseVmRSS(r io.Reader) (int64, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("bench: malformed VmRSS line %q", sc.Text())
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("bench: VmRSS: %w", err)
		}
		return kb << 10, nil
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, errors.New("bench: no VmRSS in /proc status")
}

// Mallocs returns the cumulative heap allocation count of the Go server
// whose net/http/pprof endpoint is at addr (host:port).
func Mallocs(ctx context.Context, addr string) (uint64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/debug/pprof/heap?debug=1", nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("bench: pprof heap profile: %s", resp.Status)
	}
	return parseMallocs(resp.Body)
}

// parseMallocs finds "# Mallocs = N" in a debug=1 heap profile.
func parseMallocs(r io.Reader) (uint64, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "# Mallocs = "); ok {
			return strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, errors.New("bench: no Mallocs in the pprof heap profile")
}
