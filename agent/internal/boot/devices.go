package boot

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/confidant-cvm/confidant/agent/internal/config"
)

// Device errors.
var (
	// ErrNotFound: the device did not appear before the deadline.
	ErrNotFound = errors.New("not found")
	// ErrAmbiguous: more than one device matches; the host may be trying to
	// substitute one, so none is chosen.
	ErrAmbiguous = errors.New("more than one device matches")
	// ErrNotLUKS: the bytes are not a LUKS header.
	ErrNotLUKS = errors.New("not a LUKS header")
	// ErrNotBlock: the path is not a block device.
	ErrNotBlock = errors.New("not a block device")
	// ErrSameDisk: the temp disk is the OS disk (or part of it).
	ErrSameDisk = errors.New("temp disk is the OS disk")
	// ErrNoTEE: no TEE interface of the wanted kind exists.
	ErrNoTEE = errors.New("no TEE interface")
)

// Devices finds devices through sysfs and device nodes. There is no udev:
// nodes come from devtmpfs and their names from sysfs.
type Devices struct {
	// SysDir is where sysfs is mounted ("/sys").
	SysDir string
	// DevDir is where devtmpfs is mounted ("/dev").
	DevDir string
	// Poll is the interval between looks while waiting (default 50ms).
	Poll time.Duration
}

// NewDevices returns a Devices for the real /sys and /dev.
func NewDevices() Devices {
	return Devices{SysDir: "/sys", DevDir: "/dev", Poll: 50 * time.Millisecond}
}

// wait calls look until it returns done or an error, or ctx ends; then it
// returns look's last error, wrapped with what was waited for.
func (d Devices) wait(ctx context.Context, look func() (done bool, err error)) error {
	poll := d.Poll
	if poll <= 0 {
		poll = 50 * time.Millisecond
	}
	t := time.NewTicker(poll)
	defer t.Stop()
	for {
		done, err := look()
		if done {
			return err
		}
		select {
		case <-ctx.Done():
			if err == nil {
				err = ctx.Err()
			}
			return err
		case <-t.C:
		}
	}
}

// LUKS header layout common to LUKS1 and LUKS2: magic at 0, big-endian
// version at 6, NUL-terminated UUID in 40 bytes at 168.
const (
	luksHeaderLen = 208
	luksUUIDOff   = 168
	luksUUIDLen   = 40
)

var (
	luksMagic = []byte{'L', 'U', 'K', 'S', 0xba, 0xbe}
	uuidRE    = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
)

// ParseLUKSUUID returns the UUID (lower case) and version of a LUKS1 or LUKS2
// header from its first bytes (at least 208).
func ParseLUKSUUID(hdr []byte) (string, int, error) {
	if len(hdr) < luksHeaderLen || !slices.Equal(hdr[:6], luksMagic) {
		return "", 0, ErrNotLUKS
	}
	v := int(binary.BigEndian.Uint16(hdr[6:8]))
	if v != 1 && v != 2 {
		return "", 0, fmt.Errorf("%w: version %d", ErrNotLUKS, v)
	}
	raw := hdr[luksUUIDOff : luksUUIDOff+luksUUIDLen]
	if i := slices.Index(raw, 0); i >= 0 {
		raw = raw[:i]
	}
	uuid := strings.ToLower(string(raw))
	if !uuidRE.MatchString(uuid) {
		return "", 0, fmt.Errorf("%w: malformed UUID", ErrNotLUKS)
	}
	return uuid, v, nil
}

// BlockDevice is a block device seen in /sys/class/block.
type BlockDevice struct {
	// Name is the kernel name ("vda", "vda1", "dm-0").
	Name string
	// Path is the device node ("/dev/vda").
	Path string
	// Dev is "MAJOR:MINOR".
	Dev string
	// Parent is the whole disk of a partition ("vda" for "vda1"); empty for
	// a whole disk.
	Parent string
	// LUKSUUID is the LUKS UUID if the device starts with a LUKS header.
	LUKSUUID string
}

// BlockDevices lists the block devices with a non-zero size, sorted by name,
// reading each one's first bytes for a LUKS header.
func (d Devices) BlockDevices() ([]BlockDevice, error) {
	classDir := filepath.Join(d.SysDir, "class/block")
	ents, err := os.ReadDir(classDir)
	if err != nil {
		return nil, fmt.Errorf("listing block devices: %w", err)
	}
	var out []BlockDevice
	for _, e := range ents {
		name := e.Name()
		sys := filepath.Join(classDir, name)
		if size, err := readTrim(filepath.Join(sys, "size")); err != nil || size == "0" {
			continue
		}
		bd := BlockDevice{Name: name, Path: filepath.Join(d.DevDir, name)}
		bd.Dev, _ = readTrim(filepath.Join(sys, "dev"))
		if _, err := os.Stat(filepath.Join(sys, "partition")); err == nil {
			// The partition's sysfs directory sits inside its disk's.
			if real, err := filepath.EvalSymlinks(sys); err == nil {
				bd.Parent = filepath.Base(filepath.Dir(real))
			}
		}
		if hdr, err := readHead(bd.Path, luksHeaderLen); err == nil {
			bd.LUKSUUID, _, _ = ParseLUKSUUID(hdr)
		}
		out = append(out, bd)
	}
	return out, nil
}

// FindLUKS waits until exactly one block device carries a LUKS header with
// uuid and returns it. Until ctx ends, it keeps looking; then it reports
// what it saw. Two devices with the same UUID fail with ErrAmbiguous at
// once.
func (d Devices) FindLUKS(ctx context.Context, uuid string) (BlockDevice, error) {
	uuid = strings.ToLower(uuid)
	var found BlockDevice
	var seen []BlockDevice
	err := d.wait(ctx, func() (bool, error) {
		devs, err := d.BlockDevices()
		if err != nil {
			return true, err
		}
		seen = devs
		var match []BlockDevice
		for _, bd := range devs {
			if bd.LUKSUUID == uuid {
				match = append(match, bd)
			}
		}
		switch len(match) {
		case 0:
			return false, nil
		case 1:
			found = match[0]
			return true, nil
		default:
			names := make([]string, len(match))
			for i, m := range match {
				names[i] = m.Name
			}
			return true, fmt.Errorf("LUKS UUID %s on %s: %w", uuid, strings.Join(names, ", "), ErrAmbiguous)
		}
	})
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
			return BlockDevice{}, fmt.Errorf("no block device with LUKS UUID %s (seen: %s): %w", uuid, describe(seen), ErrNotFound)
		}
		return BlockDevice{}, err
	}
	return found, nil
}

func describe(devs []BlockDevice) string {
	if len(devs) == 0 {
		return "none"
	}
	parts := make([]string, len(devs))
	for i, bd := range devs {
		if bd.LUKSUUID != "" {
			parts[i] = bd.Name + " LUKS " + bd.LUKSUUID
		} else {
			parts[i] = bd.Name
		}
	}
	return strings.Join(parts, ", ")
}

// WaitBlock waits until path is a block device node and returns its
// "MAJOR:MINOR".
func (d Devices) WaitBlock(ctx context.Context, path string) (string, error) {
	var dev string
	err := d.wait(ctx, func() (bool, error) {
		var st unix.Stat_t
		if err := unix.Stat(path, &st); err != nil {
			if errors.Is(err, unix.ENOENT) {
				return false, nil
			}
			return true, fmt.Errorf("%s: %w", path, err)
		}
		if st.Mode&unix.S_IFMT != unix.S_IFBLK {
			return true, fmt.Errorf("%s: %w", path, ErrNotBlock)
		}
		dev = fmt.Sprintf("%d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev))
		return true, nil
	})
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return "", fmt.Errorf("block device %s: %w", path, ErrNotFound)
	}
	return dev, err
}

// CheckDistinct fails with ErrSameDisk when the temp disk (by MAJOR:MINOR)
// is the OS disk, the OS disk's parent disk, or a partition of the disk that
// holds the OS disk.
func (d Devices) CheckDistinct(osDisk BlockDevice, tempDev string, devs []BlockDevice) error {
	if tempDev == osDisk.Dev {
		return fmt.Errorf("%s: %w", osDisk.Name, ErrSameDisk)
	}
	osWhole := osDisk.Name
	if osDisk.Parent != "" {
		osWhole = osDisk.Parent
	}
	for _, bd := range devs {
		if bd.Dev != tempDev {
			continue
		}
		whole := bd.Name
		if bd.Parent != "" {
			whole = bd.Parent
		}
		if whole == osWhole {
			return fmt.Errorf("temp disk %s and OS disk %s share disk %s: %w", bd.Name, osDisk.Name, whole, ErrSameDisk)
		}
	}
	return nil
}

// FindVirtioPort waits for the virtio-serial port with the given name
// (/sys/class/virtio-ports/*/name) and returns its device node.
func (d Devices) FindVirtioPort(ctx context.Context, name string) (string, error) {
	var node string
	err := d.wait(ctx, func() (bool, error) {
		p, err := d.LookVirtioPort(name)
		if errors.Is(err, ErrNotFound) {
			return false, nil // the node appears right after the sysfs entry
		}
		node = p
		return true, err
	})
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return "", fmt.Errorf("virtio-serial port %q: %w", name, ErrNotFound)
	}
	return node, err
}

// LookVirtioPort looks once for the virtio-serial port called name: the one
// entry of SYSDIR/class/virtio-ports/*/name holding name, as DEVDIR/vportNpM.
// No entry, or no device node yet, fails with ErrNotFound; two ports with
// the name fail with ErrAmbiguous (the host may be trying to substitute
// one).
func (d Devices) LookVirtioPort(name string) (string, error) {
	files, err := filepath.Glob(filepath.Join(d.SysDir, "class/virtio-ports/*/name"))
	if err != nil {
		return "", fmt.Errorf("listing virtio-serial ports: %w", err)
	}
	var match []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err == nil && strings.TrimRight(string(b), "\n") == name {
			match = append(match, filepath.Base(filepath.Dir(f)))
		}
	}
	switch len(match) {
	case 0:
		return "", fmt.Errorf("virtio-serial port %q: %w", name, ErrNotFound)
	case 1:
	default:
		return "", fmt.Errorf("virtio port %s on %s: %w", name, strings.Join(match, ", "), ErrAmbiguous)
	}
	node := filepath.Join(d.DevDir, match[0])
	if _, err := os.Stat(node); err != nil {
		return "", fmt.Errorf("virtio-serial port %q (%s): %w: %w", name, match[0], ErrNotFound, err)
	}
	return node, nil
}

// TEE is a TEE interface found on the guest.
type TEE struct {
	// Kind is the interface: configfs-tsm, sev-guest, tdx-guest or sim.
	Kind config.TEE
	// Path is its directory or device node.
	Path string
}

// ConfigfsReportDir is configfs-tsm's report directory, relative to SysDir.
const ConfigfsReportDir = "kernel/config/tsm/report"

// TEECandidates returns where the hardware TEE interfaces kind may use
// live, in the order auto tries them: configfs-tsm, sev-guest, tdx-guest.
// config.TEEAuto lists all three, a hardware kind its own; the simulation
// and unknown kinds list none.
func (d Devices) TEECandidates(kind config.TEE) []TEE {
	all := []TEE{
		{Kind: config.TEEConfigfsTSM, Path: filepath.Join(d.SysDir, ConfigfsReportDir)},
		{Kind: config.TEESEVGuest, Path: filepath.Join(d.DevDir, "sev-guest")},
		{Kind: config.TEETDXGuest, Path: filepath.Join(d.DevDir, "tdx_guest")},
	}
	if kind == config.TEEAuto {
		return all
	}
	return slices.DeleteFunc(all, func(c TEE) bool { return c.Kind != kind })
}

// FindTEE waits for the TEE interface kind. With config.TEEAuto it takes the
// first hardware interface present, in the order configfs-tsm, sev-guest,
// tdx-guest; auto never selects the simulation. With config.TEESim it finds
// the virtio-serial port simPort.
func (d Devices) FindTEE(ctx context.Context, kind config.TEE, simPort string) (TEE, error) {
	if kind == config.TEESim {
		p, err := d.FindVirtioPort(ctx, simPort)
		if err != nil {
			return TEE{}, fmt.Errorf("simulated TEE: %w", err)
		}
		return TEE{Kind: config.TEESim, Path: p}, nil
	}
	candidates := d.TEECandidates(kind)
	if len(candidates) == 0 {
		return TEE{}, fmt.Errorf("TEE kind %q: %w", kind, ErrNoTEE)
	}
	var found TEE
	err := d.wait(ctx, func() (bool, error) {
		for _, c := range candidates {
			if _, err := os.Stat(c.Path); err == nil {
				found = c
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		paths := make([]string, len(candidates))
		for i, c := range candidates {
			paths[i] = c.Path
		}
		return TEE{}, fmt.Errorf("%s (looked for %s): %w", kind, strings.Join(paths, ", "), ErrNoTEE)
	}
	return found, nil
}

func readTrim(p string) (string, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

// readHead reads the first n bytes of a file or device.
func readHead(p string, n int) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	buf := make([]byte, n)
	if _, err := io.ReadFull(f, buf); err != nil {
		return nil, err
	}
	return buf, nil
}
