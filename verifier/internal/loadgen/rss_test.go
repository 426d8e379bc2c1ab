package loadgen

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

func TestProcSelf(t *testing.T) {
	var p ProcFS
	rss, err := p.RSS(os.Getpid())
	if err != nil || rss < 1<<20 {
		t.Fatalf("RSS = %d, %v", rss, err)
	}
	if _, err := p.CPU(os.Getpid()); err != nil {
		t.Fatal(err)
	}
	if _, err := p.RSS(-1); err == nil {
		t.Error("RSS of pid -1: no error")
	}
}

func TestListeningPID(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	addr := ln.Addr().(*net.TCPAddr).AddrPort()
	pid, err := ProcFS{}.ListeningPID(addr)
	if err != nil || pid != os.Getpid() {
		t.Fatalf("ListeningPID(%v) = %d, %v; want %d", addr, pid, err, os.Getpid())
	}
	got, err := FindVerifierPID(context.Background(), ProcFS{}, "http://localhost:"+strconv.Itoa(int(addr.Port())))
	if err != nil || got != os.Getpid() {
		t.Errorf("FindVerifierPID = %d, %v", got, err)
	}
	// A connected (not listening) port is not the verifier.
	c, err := net.Dial("tcp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	local := c.LocalAddr().(*net.TCPAddr).AddrPort()
	if _, err := (ProcFS{}).ListeningPID(local); !errors.Is(err, ErrNoProcess) {
		t.Errorf("ListeningPID(client port %v): %v, want ErrNoProcess", local, err)
	}
}

// fakeProc builds a proc tree: net/tcp, net/tcp6, process 77 holding
// socket inode 4242 and process 88 holding inode 9.
func fakeProc(t *testing.T, tcp, tcp6 string) ProcFS {
	t.Helper()
	root := t.TempDir()
	for name, content := range map[string]string{"net/tcp": tcp, "net/tcp6": tcp6, "77/status": "Name:\tv\nVmRSS:\t  2048 kB\n"} {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(root, "77", "fd"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("socket:[4242]", filepath.Join(root, "77", "fd", "5")); err != nil {
		t.Fatal(err)
	}
	// Process 88 holds the established connection's socket, inode 9.
	if err := os.MkdirAll(filepath.Join(root, "88", "fd"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("socket:[9]", filepath.Join(root, "88", "fd", "3")); err != nil {
		t.Fatal(err)
	}
	return ProcFS{Root: root}
}

const tcpHeader = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"

func TestListeningPIDFake(t *testing.T) {
	// 127.0.0.1:8443 listening, inode 4242; 10.0.0.1:8443 established, 9.
	v4 := tcpHeader +
		"   0: 0100007F:20FB 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0 100 0 0 10 0\n" +
		"   1: 0100000A:20FC 0100007F:20FB 01 00000000:00000000 00:00000000 00000000     0        0 9 1 0 100 0 0 10 0\n"
	// [::]:9000 listening, inode 4242.
	v6 := tcpHeader +
		"   0: 00000000000000000000000000000000:2328 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0 100 0 0 10 0\n"
	p := fakeProc(t, v4, v6)
	tests := map[string]struct {
		addr    string
		wantErr error
	}{
		"exact IPv4":                 {addr: "127.0.0.1:8443"},
		"other address on the port":  {addr: "127.0.0.2:8443", wantErr: ErrNoProcess},
		"established, not listening": {addr: "10.0.0.1:8444", wantErr: ErrNoProcess},
		"IPv6 wildcard, IPv4 client": {addr: "127.0.0.1:9000"},
		"IPv6 wildcard, IPv6 client": {addr: "[::1]:9000"},
		"nobody on the port":         {addr: "127.0.0.1:1", wantErr: ErrNoProcess},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			pid, err := p.ListeningPID(netip.MustParseAddrPort(tc.addr))
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("ListeningPID: %d, %v; want %v", pid, err, tc.wantErr)
			}
			if err == nil && pid != 77 {
				t.Errorf("pid %d, want 77", pid)
			}
		})
	}
	if rss, err := p.RSS(77); err != nil || rss != 2048<<10 {
		t.Errorf("RSS = %d, %v", rss, err)
	}
}

func TestParseProcFiles(t *testing.T) {
	if _, err := parseNetTCP([]byte(tcpHeader + "   0: 0100007F:ZZZZ 00000000:0000 0A 0 0 0 0 0 1\n")); err == nil {
		t.Error("bad port accepted")
	}
	if _, err := parseNetTCP([]byte("garbage\n")); err == nil {
		t.Error("no header accepted")
	}
	for status, want := range map[string]int64{
		"VmRSS:\t 100 kB\n":    100 << 10,
		"Name: x\nVmRSS: 1 kB": 1 << 10,
		"VmRSS: 100 MB\n":      -1,
		"VmRSS: -5 kB\n":       -1,
		"VmRSS:\n":             -1,
		"Name: kthread\n":      -1,
	} {
		got, err := parseVmRSS([]byte(status))
		if (err != nil) != (want < 0) || (err == nil && got != want) {
			t.Errorf("parseVmRSS(%q) = %d, %v; want %d", status, got, err, want)
		}
	}
	for stat, want := range map[string]time.Duration{
		"1 (verifier) S 1 1 1 0 -1 0 0 0 0 0 150 50 0 0":  2 * time.Second,
		"1 (a) (b c) R 1 1 1 0 -1 0 0 0 0 0 1 2 0 0 20 0": 30 * time.Millisecond,
		"1 (x) S 1 1 1":  -1,
		"no parenthesis": -1,
		"1 (x) S 1 1 1 0 -1 0 0 0 0 0 -3 50 0 0 20 0 1 0 ": -1,
	} {
		got, err := parseStatCPU([]byte(stat))
		if (err != nil) != (want < 0) || (err == nil && got != want) {
			t.Errorf("parseStatCPU(%q) = %v, %v; want %v", stat, got, err, want)
		}
	}
}

func TestRSSSampler(t *testing.T) {
	s := &rssSampler{pid: os.Getpid(), every: time.Millisecond}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	s.run(ctx)
	r := s.result()
	if r.PID != os.Getpid() || r.Samples < 2 || r.MaxBytes < r.MeanBytes || r.StartBytes <= 0 || r.Error != "" {
		t.Errorf("stats %+v", r)
	}
	gone := &rssSampler{pid: 1 << 30, every: time.Millisecond}
	gone.sample()
	if r := gone.result(); r.Samples != 0 || r.Error == "" {
		t.Errorf("stats of a missing process %+v", r)
	}
}
