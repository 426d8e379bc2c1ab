// Package netcfg brings up the guest's network without any tool: the
// loopback interface, one interface with a static address, and a default
// route, through rtnetlink messages on a NETLINK_ROUTE socket.
package netcfg

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Errors.
var (
	// ErrNoInterface: no usable interface appeared before the deadline.
	ErrNoInterface = errors.New("no network interface")
	// ErrNetlink: the kernel's reply was malformed.
	ErrNetlink = errors.New("malformed netlink reply")
)

// Interface is a network interface.
type Interface struct {
	Name  string
	Index int
}

// Params says how to configure the network.
type Params struct {
	// Interface names the interface; empty: the first interface backed by a
	// device (lowest index), which on a VM is the first NIC.
	Interface string
	// Address is the static address and prefix; zero: the interface is only
	// brought up.
	Address netip.Prefix
	// Gateway is the default gateway; zero: no default route.
	Gateway netip.Addr
}

// Result says what was configured.
type Result struct {
	Interface Interface
	Address   netip.Prefix
	Gateway   netip.Addr
}

// Configurer configures interfaces through sysfs (to find them) and
// rtnetlink (to change them).
type Configurer struct {
	// SysDir is where sysfs is mounted ("/sys").
	SysDir string
	// Poll is the interval between looks for the interface.
	Poll time.Duration
}

// New returns a Configurer for the real /sys.
func New() *Configurer { return &Configurer{SysDir: "/sys", Poll: 50 * time.Millisecond} }

// Loopback brings lo up (its addresses come with it).
func (c *Configurer) Loopback() error {
	ifc, err := c.byName("lo")
	if err != nil {
		return err
	}
	nl, err := dial()
	if err != nil {
		return err
	}
	defer nl.close()
	if err := nl.request(unix.RTM_NEWLINK, 0, linkUpMsg(ifc.Index)); err != nil {
		return fmt.Errorf("bringing lo up: %w", err)
	}
	return nil
}

// Configure waits for the interface (until ctx ends), brings it up, sets the
// address and adds the default route.
func (c *Configurer) Configure(ctx context.Context, p Params) (Result, error) {
	ifc, err := c.WaitInterface(ctx, p.Interface)
	if err != nil {
		return Result{}, err
	}
	nl, err := dial()
	if err != nil {
		return Result{}, err
	}
	defer nl.close()
	if err := nl.request(unix.RTM_NEWLINK, 0, linkUpMsg(ifc.Index)); err != nil {
		return Result{}, fmt.Errorf("bringing %s up: %w", ifc.Name, err)
	}
	res := Result{Interface: ifc}
	if p.Address.IsValid() {
		if err := nl.request(unix.RTM_NEWADDR, unix.NLM_F_CREATE|unix.NLM_F_REPLACE, addrMsg(ifc.Index, p.Address)); err != nil {
			return res, fmt.Errorf("setting address %s on %s: %w", p.Address, ifc.Name, err)
		}
		res.Address = p.Address
	}
	if p.Gateway.IsValid() {
		if err := nl.request(unix.RTM_NEWROUTE, unix.NLM_F_CREATE|unix.NLM_F_REPLACE, defaultRouteMsg(ifc.Index, p.Gateway)); err != nil {
			return res, fmt.Errorf("adding default route via %s on %s: %w", p.Gateway, ifc.Name, err)
		}
		res.Gateway = p.Gateway
	}
	return res, nil
}

// WaitInterface waits until the named interface exists, or (name empty) any
// interface backed by a device, and returns it (lowest index first).
func (c *Configurer) WaitInterface(ctx context.Context, name string) (Interface, error) {
	poll := c.Poll
	if poll <= 0 {
		poll = 50 * time.Millisecond
	}
	t := time.NewTicker(poll)
	defer t.Stop()
	for {
		if name != "" {
			if ifc, err := c.byName(name); err == nil {
				return ifc, nil
			}
		} else if ifcs := c.devices(); len(ifcs) > 0 {
			return ifcs[0], nil
		}
		select {
		case <-ctx.Done():
			want := name
			if want == "" {
				want = "any NIC"
			}
			return Interface{}, fmt.Errorf("%s (have: %s): %w", want, strings.Join(c.names(), ", "), ErrNoInterface)
		case <-t.C:
		}
	}
}

func (c *Configurer) byName(name string) (Interface, error) {
	b, err := os.ReadFile(filepath.Join(c.SysDir, "class/net", name, "ifindex"))
	if err != nil {
		return Interface{}, fmt.Errorf("interface %s: %w", name, err)
	}
	idx, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || idx <= 0 {
		return Interface{}, fmt.Errorf("interface %s: bad ifindex %q", name, b)
	}
	return Interface{Name: name, Index: idx}, nil
}

// devices lists interfaces with a "device" link (a NIC, not lo or a tunnel),
// by index.
func (c *Configurer) devices() []Interface {
	var out []Interface
	for _, n := range c.names() {
		if _, err := os.Stat(filepath.Join(c.SysDir, "class/net", n, "device")); err != nil {
			continue
		}
		if ifc, err := c.byName(n); err == nil {
			out = append(out, ifc)
		}
	}
	slices.SortFunc(out, func(a, b Interface) int { return a.Index - b.Index })
	return out
}

func (c *Configurer) names() []string {
	ents, _ := os.ReadDir(filepath.Join(c.SysDir, "class/net"))
	names := make([]string, 0, len(ents))
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// Message bodies. Layouts from linux/rtnetlink.h, linux/if_link.h,
// linux/if_addr.h; all in host byte order.

func linkUpMsg(index int) []byte {
	b := make([]byte, unix.SizeofIfInfomsg)
	b[0] = unix.AF_UNSPEC
	binary.NativeEndian.PutUint32(b[4:], uint32(index))
	binary.NativeEndian.PutUint32(b[8:], unix.IFF_UP)  // flags
	binary.NativeEndian.PutUint32(b[12:], unix.IFF_UP) // change
	return b
}

func family(a netip.Addr) (byte, []byte) {
	if a.Is4() {
		v := a.As4()
		return unix.AF_INET, v[:]
	}
	v := a.As16()
	return unix.AF_INET6, v[:]
}

func addrMsg(index int, p netip.Prefix) []byte {
	fam, addr := family(p.Addr())
	b := make([]byte, unix.SizeofIfAddrmsg)
	b[0] = fam
	b[1] = byte(p.Bits())
	b[3] = unix.RT_SCOPE_UNIVERSE
	binary.NativeEndian.PutUint32(b[4:], uint32(index))
	b = appendAttr(b, unix.IFA_LOCAL, addr)
	b = appendAttr(b, unix.IFA_ADDRESS, addr)
	if fam == unix.AF_INET && p.Bits() < 31 {
		b = appendAttr(b, unix.IFA_BROADCAST, broadcast(p))
	}
	return b
}

func broadcast(p netip.Prefix) []byte {
	a := p.Masked().Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	binary.BigEndian.PutUint32(a[:], binary.BigEndian.Uint32(a[:])|host)
	return a[:]
}

func defaultRouteMsg(index int, gw netip.Addr) []byte {
	fam, addr := family(gw)
	b := make([]byte, unix.SizeofRtMsg)
	b[0] = fam
	b[4] = unix.RT_TABLE_MAIN
	b[5] = unix.RTPROT_BOOT
	b[6] = unix.RT_SCOPE_UNIVERSE
	b[7] = unix.RTN_UNICAST
	b = appendAttr(b, unix.RTA_GATEWAY, addr)
	oif := make([]byte, 4)
	binary.NativeEndian.PutUint32(oif, uint32(index))
	return appendAttr(b, unix.RTA_OIF, oif)
}

// appendAttr appends one rtattr (length, type, data, padding to 4 bytes).
func appendAttr(b []byte, typ uint16, data []byte) []byte {
	hdr := make([]byte, unix.SizeofRtAttr)
	binary.NativeEndian.PutUint16(hdr[0:], uint16(unix.SizeofRtAttr+len(data)))
	binary.NativeEndian.PutUint16(hdr[2:], typ)
	b = append(b, hdr...)
	b = append(b, data...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}
