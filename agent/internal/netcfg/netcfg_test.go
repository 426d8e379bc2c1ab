package netcfg

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/confidant-cvm/confidant/shared/testenv"
)

func TestMessages(t *testing.T) {
	link := linkUpMsg(3)
	if len(link) != 16 || binary.NativeEndian.Uint32(link[4:]) != 3 ||
		binary.NativeEndian.Uint32(link[8:]) != unix.IFF_UP || binary.NativeEndian.Uint32(link[12:]) != unix.IFF_UP {
		t.Errorf("link message % x", link)
	}
	addr := addrMsg(2, netip.MustParsePrefix("10.0.2.15/24"))
	want := []byte{unix.AF_INET, 24, 0, 0}
	want = binary.NativeEndian.AppendUint32(want, 2)
	for _, attr := range []struct {
		typ  uint16
		data []byte
	}{{unix.IFA_LOCAL, []byte{10, 0, 2, 15}}, {unix.IFA_ADDRESS, []byte{10, 0, 2, 15}}, {unix.IFA_BROADCAST, []byte{10, 0, 2, 255}}} {
		want = binary.NativeEndian.AppendUint16(want, 8)
		want = binary.NativeEndian.AppendUint16(want, attr.typ)
		want = append(want, attr.data...)
	}
	if !slices.Equal(addr, want) {
		t.Errorf("address message\n% x\nwant\n% x", addr, want)
	}
	v6 := addrMsg(2, netip.MustParsePrefix("fd00::15/64"))
	if v6[0] != unix.AF_INET6 || v6[1] != 64 || len(v6) != 8+2*20 {
		t.Errorf("IPv6 address message % x", v6)
	}
	route := defaultRouteMsg(2, netip.MustParseAddr("10.0.2.2"))
	if route[0] != unix.AF_INET || route[1] != 0 || route[4] != unix.RT_TABLE_MAIN || route[7] != unix.RTN_UNICAST ||
		len(route) != 12+8+8 || !slices.Equal(route[16:20], []byte{10, 0, 2, 2}) {
		t.Errorf("route message % x", route)
	}
}

// nlmsg builds one netlink message.
func nlmsg(typ uint16, seq uint32, body []byte) []byte {
	b := binary.NativeEndian.AppendUint32(nil, uint32(16+len(body)))
	b = binary.NativeEndian.AppendUint16(b, typ)
	b = binary.NativeEndian.AppendUint16(b, 0)
	b = binary.NativeEndian.AppendUint32(b, seq)
	b = binary.NativeEndian.AppendUint32(b, 0)
	b = append(b, body...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

func errBody(code int32) []byte {
	return append(binary.NativeEndian.AppendUint32(nil, uint32(code)), make([]byte, 16)...)
}

func TestParseAck(t *testing.T) {
	tests := map[string]struct {
		buf      []byte
		wantDone bool
		wantErr  error
	}{
		"ack":              {buf: nlmsg(unix.NLMSG_ERROR, 7, errBody(0)), wantDone: true},
		"kernel error":     {buf: nlmsg(unix.NLMSG_ERROR, 7, errBody(-int32(unix.EEXIST))), wantDone: true, wantErr: unix.EEXIST},
		"other seq first":  {buf: append(nlmsg(unix.NLMSG_ERROR, 6, errBody(-1)), nlmsg(unix.NLMSG_ERROR, 7, errBody(0))...), wantDone: true},
		"not ours":         {buf: nlmsg(unix.NLMSG_ERROR, 6, errBody(0))},
		"other type":       {buf: nlmsg(unix.RTM_NEWLINK, 7, make([]byte, 16))},
		"positive code":    {buf: nlmsg(unix.NLMSG_ERROR, 7, errBody(5)), wantDone: true, wantErr: ErrNetlink},
		"short body":       {buf: nlmsg(unix.NLMSG_ERROR, 7, []byte{1}), wantDone: true, wantErr: ErrNetlink},
		"short header":     {buf: []byte{1, 2, 3}, wantErr: ErrNetlink},
		"length too big":   {buf: func() []byte { b := nlmsg(unix.NLMSG_ERROR, 7, errBody(0)); b[0] = 200; return b }(), wantErr: ErrNetlink},
		"length too small": {buf: func() []byte { b := nlmsg(unix.NLMSG_ERROR, 7, errBody(0)); b[0] = 4; return b }(), wantErr: ErrNetlink},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			done, err := parseAck(tt.buf, 7)
			if done != tt.wantDone || !errors.Is(err, tt.wantErr) {
				t.Errorf("got %v, %v; want %v, %v", done, err, tt.wantDone, tt.wantErr)
			}
		})
	}
}

func FuzzParseAck(f *testing.F) {
	f.Add(nlmsg(unix.NLMSG_ERROR, 7, errBody(0)))
	f.Add(append(nlmsg(unix.RTM_NEWADDR, 7, make([]byte, 9)), nlmsg(unix.NLMSG_ERROR, 7, errBody(-17))...))
	f.Fuzz(func(t *testing.T, b []byte) {
		done, err := parseAck(b, 7)
		var errno syscall.Errno
		if err != nil && !errors.Is(err, ErrNetlink) && !(done && errors.As(err, &errno) && errno > 0 && errno < 4096) {
			t.Fatalf("unexpected error %v (done %v)", err, done)
		}
	})
}

const netnsChild = "CONFIDANT_NETCFG_NETNS_CHILD"

// TestConfigureInNetns configures a veth interface with real rtnetlink
// requests inside a fresh network namespace (the test re-runs itself under
// unshare), then reads the result back from the kernel.
func TestConfigureInNetns(t *testing.T) {
	if os.Getenv(netnsChild) == "" {
		testenv.RequireRoot(t, "a network namespace")
		cmd := exec.Command("unshare", "--net", "--mount", "--propagation", "private",
			os.Args[0], "-test.run=^TestConfigureInNetns$", "-test.v", "-test.count=1")
		cmd.Env = append(os.Environ(), netnsChild+"=1")
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "--- PASS: TestConfigureInNetns") {
			t.Fatalf("child in a new network namespace: %v\n%s", err, out)
		}
		return
	}

	// Inside the namespace: a sysfs mount that shows this namespace's
	// interfaces, and a veth pair (the far end up, so there is a carrier).
	sys := t.TempDir()
	if err := unix.Mount("sysfs", sys, "sysfs", 0, ""); err != nil {
		t.Fatalf("mounting sysfs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(sys, unix.MNT_DETACH) })
	for _, args := range [][]string{{"link", "add", "v0", "type", "veth", "peer", "name", "v1"}, {"link", "set", "v1", "up"}} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v\n%s", args, err, out)
		}
	}
	c := &Configurer{SysDir: sys, Poll: 5 * time.Millisecond}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()

	if err := c.Loopback(); err != nil {
		t.Fatal(err)
	}
	p := Params{Interface: "v0", Address: netip.MustParsePrefix("10.9.0.15/24"), Gateway: netip.MustParseAddr("10.9.0.1")}
	res, err := c.Configure(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if res.Interface.Name != "v0" || res.Address != p.Address || res.Gateway != p.Gateway {
		t.Errorf("result %+v", res)
	}
	// Again: replacing what is there is not an error.
	if _, err := c.Configure(ctx, p); err != nil {
		t.Errorf("second Configure: %v", err)
	}

	lo, err := net.InterfaceByName("lo")
	if err != nil || lo.Flags&net.FlagUp == 0 {
		t.Errorf("lo not up: %v %v", lo, err)
	}
	v0, err := net.InterfaceByName("v0")
	if err != nil || v0.Flags&net.FlagUp == 0 {
		t.Fatalf("v0 not up: %v %v", v0, err)
	}
	addrs, _ := v0.Addrs()
	if len(addrs) == 0 || !slices.ContainsFunc(addrs, func(a net.Addr) bool { return a.String() == "10.9.0.15/24" }) {
		t.Errorf("v0 addresses %v, want 10.9.0.15/24", addrs)
	}
	if gw := defaultGateway(t); gw != "10.9.0.1 v0" {
		t.Errorf("default route %q, want via 10.9.0.1 on v0", gw)
	}

	// The kernel's refusals come back as errors.
	bad := p
	bad.Gateway = netip.MustParseAddr("192.0.2.1") // not on any link
	if _, err := c.Configure(ctx, bad); !errors.Is(err, unix.ENETUNREACH) {
		t.Errorf("unreachable gateway: error = %v, want ENETUNREACH", err)
	}
	short, cancelShort := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancelShort()
	if _, err := c.Configure(short, Params{Interface: "eth9"}); !errors.Is(err, ErrNoInterface) {
		t.Errorf("missing interface: error = %v, want ErrNoInterface", err)
	}
	// veth and lo have no device behind them: no NIC to pick by default.
	if _, err := c.WaitInterface(short, ""); !errors.Is(err, ErrNoInterface) {
		t.Errorf("no NIC: error = %v, want ErrNoInterface", err)
	}
}

// defaultGateway reads the IPv4 default route from /proc/net/route.
func defaultGateway(t *testing.T) string {
	f, err := os.Open("/proc/net/route")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fl := strings.Fields(sc.Text())
		if len(fl) > 2 && fl[1] == "00000000" {
			var gw [4]byte
			v, _ := hexUint32(fl[2])
			binary.LittleEndian.PutUint32(gw[:], v)
			return netip.AddrFrom4(gw).String() + " " + fl[0]
		}
	}
	return ""
}

func hexUint32(s string) (uint32, error) {
	var v uint32
	for _, c := range s {
		d := strings.IndexRune("0123456789ABCDEF", c)
		if d < 0 {
			return 0, errors.New("not hex")
		}
		v = v<<4 | uint32(d)
	}
	return v, nil
}
