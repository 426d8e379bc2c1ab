package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// ErrNoProcess means no process listening on the verifier's address was
// found (it runs elsewhere, or in a namespace /proc does not show).
var ErrNoProcess = errors.New("no local process listens on the verifier's address")

// ProcFS reads process facts from a proc file system.
type ProcFS struct {
	// Root is the mount point; empty: /proc.
	Root string
}

func (p ProcFS) root() string {
	if p.Root == "" {
		return "/proc"
	}
	return p.Root
}

// RSS returns the resident set size of process pid in bytes (VmRSS of
// /proc/PID/status).
func (p ProcFS) RSS(pid int) (int64, error) {
	b, err := os.ReadFile(filepath.Join(p.root(), strconv.Itoa(pid), "status"))
	if err != nil {
		return 0, fmt.Errorf("reading RSS of process %d: %w", pid, err)
	}
	rss, err := parseVmRSS(b)
	if err != nil {
		return 0, fmt.Errorf("reading RSS of process %d: %w", pid, err)
	}
	return rss, nil
}

// parseVmRSS reads the "VmRSS:   1234 kB" line of a status file.
func parseVmRSS(status []byte) (int64, error) {
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("malformed VmRSS line %q", sc.Text())
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil || kb < 0 || kb > 1<<42 {
			return 0, fmt.Errorf("malformed VmRSS line %q", sc.Text())
		}
		return kb << 10, nil
	}
	return 0, errors.New("no VmRSS line (a kernel thread, or a zombie)")
}

// userHZ is the kernel's USER_HZ, the unit of /proc/PID/stat times; it is
// 100 on every Linux architecture Go supports.
const userHZ = 100

// CPU returns the user plus system CPU time process pid has used
// (utime and stime of /proc/PID/stat).
func (p ProcFS) CPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(filepath.Join(p.root(), strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, fmt.Errorf("reading CPU time of process %d: %w", pid, err)
	}
	d, err := parseStatCPU(b)
	if err != nil {
		return 0, fmt.Errorf("reading CPU time of process %d: %w", pid, err)
	}
	return d, nil
}

// parseStatCPU reads utime and stime (fields 14 and 15) of a stat line
// "pid (comm) state ppid ...", where comm may hold spaces and parentheses.
func parseStatCPU(stat []byte) (time.Duration, error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("malformed stat: no command name")
	}
	f := strings.Fields(string(stat[i+1:]))
	// f[0] is field 3 (state): utime is field 14, stime field 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("malformed stat: %d fields after the command name", len(f))
	}
	var ticks uint64
	for _, s := range f[11:13] {
		// 2^36 ticks is decades of CPU; two of them in nanoseconds still
		// fit a time.Duration (2^40 did not: it overflowed to negative).
		v, err := strconv.ParseUint(s, 10, 63)
		if err != nil || v > 1<<36 {
			return 0, fmt.Errorf("malformed stat: CPU time %q", s)
		}
		ticks += v
	}
	return time.Duration(ticks) * (time.Second / userHZ), nil
}

// ListeningPID finds the process that has a TCP socket listening on addr:
// its inode from /proc/net/tcp or tcp6 (an exact match, or the wildcard
// address on the same port), then the process holding a descriptor for it.
// It needs permission to read other processes' fd directories (same user,
// or root).
func (p ProcFS) ListeningPID(addr netip.AddrPort) (int, error) {
	var inodes []uint64
	for _, name := range []string{"tcp", "tcp6"} {
		b, err := os.ReadFile(filepath.Join(p.root(), "net", name))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("finding the verifier process: %w", err)
		}
		socks, err := parseNetTCP(b)
		if err != nil {
			return 0, fmt.Errorf("finding the verifier process: %s: %w", name, err)
		}
		for _, s := range socks {
			if s.listen && s.local.Port() == addr.Port() &&
				(s.local.Addr() == addr.Addr().Unmap() || s.local.Addr().IsUnspecified()) {
				inodes = append(inodes, s.inode)
			}
		}
	}
	if len(inodes) == 0 {
		return 0, fmt.Errorf("finding the verifier process: %w: no listening socket on %v", ErrNoProcess, addr)
	}
	targets := map[string]bool{}
	for _, ino := range inodes {
		targets["socket:["+strconv.FormatUint(ino, 10)+"]"] = true
	}
	procs, err := os.ReadDir(p.root())
	if err != nil {
		return 0, fmt.Errorf("finding the verifier process: %w", err)
	}
	for _, d := range procs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil || pid <= 0 {
			continue
		}
		fdDir := filepath.Join(p.root(), d.Name(), "fd")
		fds, err := os.ReadDir(fdDir)
		if err != nil {
			continue // gone, or not ours to read
		}
		for _, fd := range fds {
			link, err := os.Readlink(filepath.Join(fdDir, fd.Name()))
			if err == nil && targets[link] {
				return pid, nil
			}
		}
	}
	return 0, fmt.Errorf("finding the verifier process: %w: socket inode %v is held by no readable process", ErrNoProcess, inodes)
}

// tcpSocket is one line of /proc/net/tcp{,6}.
type tcpSocket struct {
	local  netip.AddrPort
	listen bool
	inode  uint64
}

// tcpListen is the TCP_LISTEN state in /proc/net/tcp.
const tcpListen = 0x0A

// parseNetTCP parses /proc/net/tcp or /proc/net/tcp6: a header line, then
// "sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
// ...", addresses as hex of the kernel's 32-bit words in host byte order
// (little endian here) and a hex port.
func parseNetTCP(b []byte) ([]tcpSocket, error) {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) == 0 || !strings.Contains(lines[0], "local_address") {
		return nil, errors.New("no header line")
	}
	var out []tcpSocket
	for i, line := range lines[1:] {
		f := strings.Fields(line)
		if len(f) < 10 {
			return nil, fmt.Errorf("line %d: %d fields", i+2, len(f))
		}
		local, err := parseProcAddr(f[1])
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", i+2, err)
		}
		st, err := strconv.ParseUint(f[3], 16, 8)
		if err != nil {
			return nil, fmt.Errorf("line %d: state %q", i+2, f[3])
		}
		inode, err := strconv.ParseUint(f[9], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("line %d: inode %q", i+2, f[9])
		}
		out = append(out, tcpSocket{local: local, listen: st == tcpListen, inode: inode})
	}
	return out, nil
}

// parseProcAddr parses "0100007F:1F90" or the 32-hex-digit IPv6 form.
func parseProcAddr(s string) (netip.AddrPort, error) {
	host, port, ok := strings.Cut(s, ":")
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("address %q: no port", s)
	}
	pn, err := strconv.ParseUint(port, 16, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("address %q: port: %w", s, err)
	}
	raw, err := hex.DecodeString(host)
	if err != nil || (len(raw) != 4 && len(raw) != 16) {
		return netip.AddrPort{}, fmt.Errorf("address %q: want 8 or 32 hex digits", s)
	}
	// Each 32-bit word is printed in host byte order.
	ip := make([]byte, len(raw))
	for w := 0; w < len(raw); w += 4 {
		binary.BigEndian.PutUint32(ip[w:], binary.LittleEndian.Uint32(raw[w:]))
	}
	a, _ := netip.AddrFromSlice(ip)
	return netip.AddrPortFrom(a.Unmap(), uint16(pn)), nil
}

// RSSStats summarizes the sampled RSS of the verifier.
type RSSStats struct {
	// PID is the sampled process.
	PID int `json:"pid"`
	// Samples is the number of successful samples.
	Samples int `json:"samples"`
	// StartBytes, MaxBytes, MeanBytes and EndBytes are in bytes.
	StartBytes int64 `json:"start_bytes"`
	MaxBytes   int64 `json:"max_bytes"`
	MeanBytes  int64 `json:"mean_bytes"`
	EndBytes   int64 `json:"end_bytes"`
	// Error says why sampling stopped early or never started.
	Error string `json:"error,omitempty"`
}

// rssSampler samples one process's RSS at an interval.
type rssSampler struct {
	proc  ProcFS
	pid   int
	every time.Duration

	mu    sync.Mutex
	stats RSSStats
	sum   int64
}

func (s *rssSampler) sample() {
	rss, err := s.proc.RSS(s.pid)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		if s.stats.Error == "" {
			s.stats.Error = err.Error()
		}
		return
	}
	if s.stats.Samples == 0 {
		s.stats.StartBytes = rss
	}
	s.stats.Samples++
	s.sum += rss
	s.stats.MaxBytes = max(s.stats.MaxBytes, rss)
	s.stats.EndBytes = rss
	s.stats.MeanBytes = s.sum / int64(s.stats.Samples)
}

// run samples at once, then every interval until ctx ends, then once more.
func (s *rssSampler) run(ctx context.Context) {
	s.sample()
	t := time.NewTicker(s.every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			s.sample()
			return
		case <-t.C:
			s.sample()
		}
	}
}

func (s *rssSampler) result() RSSStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.PID = s.pid
	return st
}
