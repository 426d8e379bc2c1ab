package main

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

var (
	// errMalformedTable reports a DM_TABLE_STATUS reply or a crypt table
	// line that does not have the kernel's shape.
	errMalformedTable = errors.New("malformed device-mapper table")
	// errBufferFull reports a DM_TABLE_STATUS reply that did not fit.
	errBufferFull = errors.New("device-mapper reply did not fit the buffer")
)

// redacted replaces key material wherever a table would show it.
const redacted = "<redacted>"

// withheld replaces parameters this program does not know to be free of
// key material.
const withheld = "<withheld>"

// dmDevice is what sysfs and the kernel's table say about one dm device.
type dmDevice struct {
	// Dev is the kernel name, "dm-0".
	Dev string `json:"dev"`
	// MajorMinor is the device number, "254:0".
	MajorMinor string `json:"major_minor"`
	Name       string `json:"name"`
	// UUID is the dm uuid; cryptsetup and luks.go set CRYPT-LUKS2-<uuid>-<name>.
	UUID string `json:"uuid"`
	// Slaves are the devices under this one ("vda").
	Slaves []string `json:"slaves"`
	// Bytes is the device size.
	Bytes uint64 `json:"bytes"`
	// Targets is the live table with key material redacted; empty when the
	// table could not be read (TableError says why).
	Targets    []dmTarget `json:"targets,omitempty"`
	TableError string     `json:"table_error,omitempty"`

	major, minor uint32
}

// encrypted reports whether every target of the table is a crypt target
// with a real cipher and a key. Without the table it is false: the uuid
// alone is a name anyone could give a linear mapping.
func (d dmDevice) encrypted() bool {
	if len(d.Targets) == 0 {
		return false
	}
	for _, t := range d.Targets {
		if t.Type != "crypt" || t.KeyKind == "" || t.KeyKind == "none" || t.Cipher == "" ||
			strings.Contains(t.Cipher, "null") {
			return false
		}
	}
	return true
}

// dmTarget is one line of a dm table, key material redacted. Start and
// Length are in 512-byte sectors.
type dmTarget struct {
	Start  uint64 `json:"start"`
	Length uint64 `json:"length"`
	Type   string `json:"type"`
	// Params is the target's table line with the key replaced by
	// "<redacted>" (crypt), shown as is (linear, striped, zero, error), or
	// "<withheld>" for any other target type.
	Params string `json:"params"`

	// The fields below are set for crypt targets only.
	Cipher string `json:"cipher,omitempty"`
	// Key is always "<redacted>".
	Key string `json:"key,omitempty"`
	// KeyKind is "hex" (key in the table), "keyring" (":SIZE:TYPE:DESC"),
	// or "none" ("-").
	KeyKind string `json:"key_kind,omitempty"`
	// KeyBytes is the key size, which is not secret.
	KeyBytes   int      `json:"key_bytes,omitempty"`
	IVOffset   string   `json:"iv_offset,omitempty"`
	Device     string   `json:"device,omitempty"`
	Offset     string   `json:"offset,omitempty"`
	SectorSize int      `json:"sector_size,omitempty"`
	Options    []string `json:"options,omitempty"`
}

// rawTarget is a target as the kernel returned it. Its Params may hold a
// key: it never leaves this file unredacted.
type rawTarget struct {
	Start, Length uint64
	Type          string
	Params        string
}

// tableReader returns the live table of a dm device.
type tableReader interface {
	Table(major, minor uint32) ([]rawTarget, error)
}

// ioctlTables reads tables with DM_TABLE_STATUS on the dm control node.
type ioctlTables struct {
	control string
}

// Table issues DM_TABLE_STATUS with DM_STATUS_TABLE_FLAG for the device
// major:minor, growing the buffer while the kernel reports it full.
func (t ioctlTables) Table(major, minor uint32) ([]rawTarget, error) {
	fd, err := unix.Open(t.control, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", t.control, err)
	}
	defer unix.Close(fd)
	for size := 16 << 10; size <= 1<<20; size *= 4 {
		buf := make([]byte, size)
		hdr := unix.DmIoctl{
			Version:    [3]uint32{unix.DM_VERSION_MAJOR, 0, 0},
			Data_size:  uint32(size),
			Data_start: unix.SizeofDmIoctl,
			Flags:      unix.DM_STATUS_TABLE_FLAG,
			Dev:        unix.Mkdev(major, minor),
		}
		if _, err := binary.Encode(buf, binary.NativeEndian, &hdr); err != nil {
			return nil, fmt.Errorf("encoding dm ioctl header: %w", err)
		}
		_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.DM_TABLE_STATUS, uintptr(unsafe.Pointer(&buf[0])))
		runtime.KeepAlive(buf)
		if errno != 0 {
			clear(buf)
			return nil, fmt.Errorf("DM_TABLE_STATUS for %d:%d: %w", major, minor, errno)
		}
		targets, err := parseTableStatus(buf)
		clear(buf) // the reply holds the key in hex
		if errors.Is(err, errBufferFull) {
			continue
		}
		return targets, err
	}
	return nil, fmt.Errorf("DM_TABLE_STATUS for %d:%d: %w", major, minor, errBufferFull)
}

// parseTableStatus decodes a DM_TABLE_STATUS reply: a struct dm_ioctl,
// then at data_start target_count pairs of struct dm_target_spec and a
// NUL-terminated parameter string; each spec's next is the offset of the
// following spec from data_start (linux/dm-ioctl.h, retrieve_status).
func parseTableStatus(buf []byte) ([]rawTarget, error) {
	var hdr unix.DmIoctl
	if _, err := binary.Decode(buf, binary.NativeEndian, &hdr); err != nil {
		return nil, fmt.Errorf("%w: header: %v", errMalformedTable, err)
	}
	if hdr.Flags&unix.DM_BUFFER_FULL_FLAG != 0 {
		return nil, errBufferFull
	}
	end := uint64(hdr.Data_size)
	if end > uint64(len(buf)) {
		end = uint64(len(buf))
	}
	start := uint64(hdr.Data_start)
	if start < unix.SizeofDmIoctl || start > end {
		return nil, fmt.Errorf("%w: data_start %d outside reply of %d bytes", errMalformedTable, start, end)
	}
	out := buf[start:end]
	var targets []rawTarget
	off := uint64(0)
	for i := uint32(0); i < hdr.Target_count; i++ {
		if off+unix.SizeofDmTargetSpec > uint64(len(out)) {
			return nil, fmt.Errorf("%w: target %d at %d beyond reply", errMalformedTable, i, off)
		}
		var spec unix.DmTargetSpec
		if _, err := binary.Decode(out[off:], binary.NativeEndian, &spec); err != nil {
			return nil, fmt.Errorf("%w: target %d: %v", errMalformedTable, i, err)
		}
		rest := out[off+unix.SizeofDmTargetSpec:]
		nul := indexByte(rest, 0)
		if nul < 0 {
			return nil, fmt.Errorf("%w: target %d parameters not terminated", errMalformedTable, i)
		}
		targets = append(targets, rawTarget{
			Start:  spec.Sector_start,
			Length: spec.Length,
			Type:   cString(spec.Target_type[:]),
			Params: string(rest[:nul]),
		})
		next := uint64(spec.Next)
		if i+1 < hdr.Target_count && next <= off {
			return nil, fmt.Errorf("%w: target %d next offset %d does not advance", errMalformedTable, i, next)
		}
		off = next
	}
	return targets, nil
}

func indexByte(b []byte, c byte) int {
	for i, v := range b {
		if v == c {
			return i
		}
	}
	return -1
}

func cString(b []byte) string {
	if i := indexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

// plainTarget reports whether a target type's parameters hold no key
// material.
func plainTarget(typ string) bool {
	switch typ {
	case "linear", "striped", "zero", "error":
		return true
	}
	return false
}

// redactTarget turns a raw target into one that is safe to print, and
// returns the key material it removed so the caller can make sure it is
// never printed.
func redactTarget(t rawTarget) (dmTarget, []string) {
	out := dmTarget{Start: t.Start, Length: t.Length, Type: t.Type}
	switch {
	case t.Type == "crypt":
		c, secrets := redactCrypt(t.Params)
		c.Start, c.Length, c.Type = t.Start, t.Length, t.Type
		return c, secrets
	case plainTarget(t.Type):
		out.Params = t.Params
	default:
		out.Params = withheld
	}
	return out, nil
}

// knownCryptOption reports whether o is one of dm-crypt's optional
// parameters without a value.
func knownCryptOption(o string) bool {
	switch o {
	case "allow_discards", "same_cpu_crypt", "high_priority", "submit_from_crypt_cpus",
		"no_read_workqueue", "no_write_workqueue", "iv_large_sectors":
		return true
	}
	return false
}

// redactCrypt parses a dm-crypt table line
//
//	<cipher> <key> <iv_offset> <device> <offset> [<#opt_params> <opt_params>...]
//
// and replaces the key, whatever its form (hex, ":SIZE:TYPE:DESC" keyring
// reference, or "-"), with "<redacted>". Options it does not know are
// withheld. A line it cannot parse is withheld whole; the key field (the
// second word, if any) is still returned as a secret.
func redactCrypt(params string) (dmTarget, []string) {
	f := strings.Fields(params)
	var secrets []string
	if len(f) >= 2 {
		secrets = append(secrets, f[1])
		if strings.HasPrefix(f[1], ":") {
			// A keyring reference: the description names the key.
			if parts := strings.SplitN(f[1], ":", 4); len(parts) == 4 {
				secrets = append(secrets, parts[3])
			}
		}
	}
	bad := dmTarget{Params: withheld, Key: redacted}
	if len(f) < 5 {
		return bad, secrets
	}
	t := dmTarget{
		Cipher:   f[0],
		Key:      redacted,
		IVOffset: f[2],
		Device:   f[3],
		Offset:   f[4],
	}
	switch key := f[1]; {
	case key == "-":
		t.KeyKind = "none"
	case strings.HasPrefix(key, ":"):
		parts := strings.SplitN(key, ":", 4)
		n, err := strconv.Atoi(parts[1])
		if len(parts) != 4 || err != nil || n <= 0 {
			return bad, secrets
		}
		t.KeyKind, t.KeyBytes = "keyring", n
	default:
		if _, err := hex.DecodeString(key); err != nil || len(key) == 0 {
			return bad, secrets
		}
		t.KeyKind, t.KeyBytes = "hex", len(key)/2
	}
	words := []string{t.Cipher, redacted, t.IVOffset, t.Device, t.Offset}
	if len(f) > 5 {
		n, err := strconv.Atoi(f[5])
		if err != nil || n < 0 || len(f) != 6+n {
			return bad, secrets
		}
		words = append(words, f[5])
		for _, o := range f[6:] {
			switch name, val, _ := strings.Cut(o, ":"); {
			case knownCryptOption(o):
			case name == "sector_size":
				sz, err := strconv.Atoi(val)
				if err != nil {
					return bad, secrets
				}
				t.SectorSize = sz
			case name == "integrity" || name == "integrity_key_size":
			default:
				o = withheld
			}
			t.Options = append(t.Options, o)
			words = append(words, o)
		}
	}
	if t.SectorSize == 0 {
		t.SectorSize = 512
	}
	t.Params = strings.Join(words, " ")
	return t, secrets
}

// listDM lists the dm devices under sysBlock (/sys/block) in number order,
// with name, uuid, slaves and size from sysfs.
func listDM(sysBlock string) ([]dmDevice, error) {
	paths, err := filepath.Glob(filepath.Join(sysBlock, "dm-*"))
	if err != nil {
		return nil, fmt.Errorf("listing dm devices: %w", err)
	}
	var out []dmDevice
	for _, p := range paths {
		d := dmDevice{Dev: filepath.Base(p), Slaves: []string{}}
		if _, err := strconv.Atoi(strings.TrimPrefix(d.Dev, "dm-")); err != nil {
			continue
		}
		dev, err := readTrim(filepath.Join(p, "dev"))
		if err != nil {
			return nil, err
		}
		if d.major, d.minor, err = parseMajorMinor(dev); err != nil {
			return nil, fmt.Errorf("reading %s/dev: %w", p, err)
		}
		d.MajorMinor = fmt.Sprintf("%d:%d", d.major, d.minor)
		if d.Name, err = readTrim(filepath.Join(p, "dm", "name")); err != nil {
			return nil, err
		}
		if d.UUID, err = readTrim(filepath.Join(p, "dm", "uuid")); err != nil {
			return nil, err
		}
		if size, err := readTrim(filepath.Join(p, "size")); err == nil {
			if n, err := strconv.ParseUint(size, 10, 64); err == nil {
				d.Bytes = n * 512
			}
		}
		slaves, err := os.ReadDir(filepath.Join(p, "slaves"))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("listing slaves of %s: %w", d.Dev, err)
		}
		for _, s := range slaves {
			d.Slaves = append(d.Slaves, s.Name())
		}
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool {
		a, _ := strconv.Atoi(strings.TrimPrefix(out[i].Dev, "dm-"))
		b, _ := strconv.Atoi(strings.TrimPrefix(out[j].Dev, "dm-"))
		return a < b
	})
	return out, nil
}

func readTrim(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("reading %s: %w", path, err)
	}
	return strings.TrimSpace(string(b)), nil
}
