package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// linePrefix starts every line this program prints, so tests can pick the
// lines out of a serial log.
const linePrefix = "guestcheck: "

// errKeyInOutput reports a line that would have shown key material; the
// line is withheld instead.
var errKeyInOutput = errors.New("output contained key material")

// minSecretLen is the shortest key field the output guard looks for; real
// keys are 32 hex digits or more, and a shorter string would match by chance.
const minSecretLen = 8

// checker looks at the running system. All paths are joined under root,
// which is "/" in the guest and a fake tree in tests.
type checker struct {
	root string
	// tempMount is the temp disk's mount point, "/mnt/resource".
	tempMount string
	// tokenPath is where the agent may leave the attestation token.
	tokenPath string
	// tables reads dm tables; ioctlTables in the guest.
	tables tableReader
}

// mountReport is the root and temp lines.
type mountReport struct {
	Check        string `json:"check"`
	Mountpoint   string `json:"mountpoint"`
	Mounted      bool   `json:"mounted"`
	Source       string `json:"source,omitempty"`
	FSType       string `json:"fstype,omitempty"`
	MajorMinor   string `json:"major_minor,omitempty"`
	Options      string `json:"options,omitempty"`
	SuperOptions string `json:"super_options,omitempty"`
	ReadOnly     bool   `json:"read_only"`
	// Device is the kernel's name for the block device ("dm-0", "vda").
	Device string `json:"device,omitempty"`
	// DM describes the device when it is a dm mapping.
	DM *dmRef `json:"dm,omitempty"`
	// DMCrypt: the device is a dm mapping whose live table is all crypt
	// targets with a real cipher and a key.
	DMCrypt bool `json:"dm_crypt"`

	// Temp disk only.
	SizeBytes   uint64 `json:"size_bytes,omitempty"`
	FreeBytes   uint64 `json:"free_bytes,omitempty"`
	DeviceBytes uint64 `json:"device_bytes,omitempty"`
	// Probe is "ok" when a file written there read back the same.
	Probe string `json:"probe,omitempty"`

	Error string `json:"error,omitempty"`
}

// dmRef is the short form of a dm device in the root and temp lines.
type dmRef struct {
	Name       string   `json:"name"`
	UUID       string   `json:"uuid"`
	Slaves     []string `json:"slaves"`
	Cipher     string   `json:"cipher,omitempty"`
	KeyBytes   int      `json:"key_bytes,omitempty"`
	SectorSize int      `json:"sector_size,omitempty"`
	TableError string   `json:"table_error,omitempty"`
}

type dmReport struct {
	Check   string     `json:"check"`
	Devices []dmDevice `json:"devices"`
	Error   string     `json:"error,omitempty"`
}

type tokenReport struct {
	Check   string       `json:"check"`
	Path    string       `json:"path"`
	Present bool         `json:"present"`
	Mode    string       `json:"mode,omitempty"`
	Claims  *tokenClaims `json:"claims,omitempty"`
	Error   string       `json:"error,omitempty"`
}

type summaryReport struct {
	Check    string   `json:"check"`
	OK       bool     `json:"ok"`
	Problems []string `json:"problems"`
}

// emitter writes one "guestcheck: {json}" line per report and refuses any
// line that contains a key it has been told about.
type emitter struct {
	w       io.Writer
	secrets []string
}

func (e *emitter) emit(check string, v any) error {
	var buf bytes.Buffer
	buf.WriteString(linePrefix)
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // keep "<redacted>" readable in the log
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("encoding %s report: %w", check, err)
	}
	var leak error
	if e.leaks(buf.Bytes()) {
		leak = fmt.Errorf("%s report: %w", check, errKeyInOutput)
		buf.Reset()
		fmt.Fprintf(&buf, "%s{\"check\":%q,\"error\":\"report withheld: it contained key material\"}\n", linePrefix, check)
	}
	if _, err := e.w.Write(buf.Bytes()); err != nil {
		return fmt.Errorf("writing %s report: %w", check, err)
	}
	return leak
}

func (e *emitter) leaks(line []byte) bool {
	l := bytes.ToLower(line)
	for _, s := range e.secrets {
		if len(s) >= minSecretLen && bytes.Contains(l, bytes.ToLower([]byte(s))) {
			return true
		}
	}
	return false
}

// run prints the root, temp, dm, token and summary lines and reports
// whether the system passed: root and temp disk on dm-crypt, temp disk
// mounted read-write and writable. The error is for output that could not
// be written at all.
func (c *checker) run(w io.Writer) (bool, error) {
	var problems []string
	problem := func(format string, a ...any) { problems = append(problems, fmt.Sprintf(format, a...)) }

	mounts, mountErr := c.readMounts()
	if mountErr != nil {
		problem("%v", mountErr)
	}

	// Read every table first, so the output guard knows every key before
	// the first line is written.
	e := &emitter{w: w}
	devs, dmErr := c.readDM(e)
	if dmErr != nil {
		problem("%v", dmErr)
	}

	emit := func(check string, v any) error {
		err := e.emit(check, v)
		if errors.Is(err, errKeyInOutput) {
			problem("%v", err)
			return nil
		}
		return err
	}

	root := c.mountReport("root", "/", mounts, mountErr, devs)
	checkRoot(root, problem)
	if err := emit("root", root); err != nil {
		return false, err
	}

	temp := c.mountReport("temp", c.tempMount, mounts, mountErr, devs)
	if temp.Mounted {
		c.probeTemp(&temp)
	}
	c.checkTemp(temp, root, problem)
	if err := emit("temp", temp); err != nil {
		return false, err
	}

	if err := emit("dm", newDMReport(devs, dmErr)); err != nil {
		return false, err
	}

	if err := emit("token", c.tokenReport()); err != nil {
		return false, err
	}

	// The event log is informational: a BIOS boot may have none, and the
	// host decides what it must hold.
	if err := emit("eventlog", c.eventLogReport()); err != nil {
		return false, err
	}

	sum := summaryReport{Check: "summary", OK: len(problems) == 0, Problems: problems}
	if sum.Problems == nil {
		sum.Problems = []string{}
	}
	if err := e.emit("summary", sum); err != nil {
		return false, err
	}
	return sum.OK, nil
}

// readDM lists the device-mapper devices and reads their tables, redacted;
// the keys it redacts go to e's output guard.
func (c *checker) readDM(e *emitter) ([]dmDevice, error) {
	devs, listErr := listDM(c.path("/sys/block"))
	for i := range devs {
		raw, err := c.tables.Table(devs[i].major, devs[i].minor)
		if err != nil {
			devs[i].TableError = err.Error()
			continue
		}
		for _, t := range raw {
			red, secrets := redactTarget(t)
			e.secrets = append(e.secrets, secrets...)
			devs[i].Targets = append(devs[i].Targets, red)
		}
	}
	return devs, listErr
}

// checkRoot reports what is wrong with the root mount: it must be on
// dm-crypt.
func checkRoot(root mountReport, problem func(format string, a ...any)) {
	switch {
	case !root.Mounted:
		problem("root: no mount at / in mountinfo")
	case root.DM == nil:
		problem("root: %s (%s) is not a device-mapper device", root.Source, root.MajorMinor)
	case !root.DMCrypt:
		problem("root: dm device %s is not dm-crypt%s", root.DM.Name, tableSuffix(root.DM))
	}
}

// checkTemp reports what is wrong with the temp mount: it must be on
// dm-crypt, writable, and not the root device.
func (c *checker) checkTemp(temp, root mountReport, problem func(format string, a ...any)) {
	switch {
	case !temp.Mounted:
		problem("temp: nothing mounted at %s", c.tempMount)
	case temp.DM == nil:
		problem("temp: %s (%s) is not a device-mapper device", temp.Source, temp.MajorMinor)
	case !temp.DMCrypt:
		problem("temp: dm device %s is not dm-crypt%s", temp.DM.Name, tableSuffix(temp.DM))
	}
	if !temp.Mounted {
		return
	}
	if temp.ReadOnly {
		problem("temp: %s is mounted read-only", c.tempMount)
	}
	if temp.Probe != "ok" {
		problem("temp: write probe: %s", temp.Probe)
	}
	if root.Mounted && temp.MajorMinor == root.MajorMinor {
		problem("temp: %s is the root device %s", c.tempMount, root.MajorMinor)
	}
}

// newDMReport is the dm check's line: every device, and why listing them
// failed if it did.
func newDMReport(devs []dmDevice, dmErr error) dmReport {
	dmr := dmReport{Check: "dm", Devices: devs}
	if dmr.Devices == nil {
		dmr.Devices = []dmDevice{}
	}
	if dmErr != nil {
		dmr.Error = dmErr.Error()
	}
	return dmr
}

func tableSuffix(d *dmRef) string {
	if d.TableError != "" {
		return " (table unreadable: " + d.TableError + ")"
	}
	return ""
}

func (c *checker) path(p string) string {
	return filepath.Join(c.root, p)
}

func (c *checker) readMounts() ([]mountEntry, error) {
	f, err := os.Open(c.path("/proc/self/mountinfo"))
	if err != nil {
		return nil, fmt.Errorf("opening mountinfo: %w", err)
	}
	defer f.Close()
	return parseMountinfo(f)
}

// mountReport describes the mount at point and the device under it.
func (c *checker) mountReport(check, point string, mounts []mountEntry, mountErr error, devs []dmDevice) mountReport {
	r := mountReport{Check: check, Mountpoint: point}
	if mountErr != nil {
		r.Error = mountErr.Error()
		return r
	}
	m, ok := findMount(mounts, point)
	if !ok {
		return r
	}
	r.Mounted = true
	r.Source, r.FSType = m.Source, m.FSType
	r.Options, r.SuperOptions = strings.Join(m.Options, ","), strings.Join(m.SuperOptions, ",")
	r.ReadOnly = m.readOnly()
	major, minor := m.Major, m.Minor
	if major == 0 {
		// An anonymous device number (btrfs, overlay...): fall back to the
		// device node the mount names, /dev/mapper/NAME or /dev/dm-N.
		if maj, min, err := c.statBlock(m.Source); err == nil {
			major, minor = maj, min
		}
	}
	r.MajorMinor = fmt.Sprintf("%d:%d", major, minor)
	if link, err := os.Readlink(c.path("/sys/dev/block/" + r.MajorMinor)); err == nil {
		r.Device = filepath.Base(link)
	}
	for _, d := range devs {
		if d.major != major || d.minor != minor {
			continue
		}
		r.Device = d.Dev
		r.DeviceBytes = d.Bytes
		ref := &dmRef{Name: d.Name, UUID: d.UUID, Slaves: d.Slaves, TableError: d.TableError}
		if len(d.Targets) > 0 {
			ref.Cipher, ref.KeyBytes, ref.SectorSize = d.Targets[0].Cipher, d.Targets[0].KeyBytes, d.Targets[0].SectorSize
		}
		r.DM = ref
		r.DMCrypt = d.encrypted()
		break
	}
	return r
}

func (c *checker) statBlock(source string) (uint32, uint32, error) {
	if !strings.HasPrefix(source, "/dev/") {
		return 0, 0, fmt.Errorf("source %q is not a device node", source)
	}
	var st unix.Stat_t
	if err := unix.Stat(c.path(source), &st); err != nil {
		return 0, 0, fmt.Errorf("stat %s: %w", source, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFBLK {
		return 0, 0, fmt.Errorf("%s is not a block device", source)
	}
	return unix.Major(st.Rdev), unix.Minor(st.Rdev), nil
}

// probeTemp fills in the filesystem size and writes, syncs, reads back and
// removes a file on the temp disk.
func (c *checker) probeTemp(r *mountReport) {
	dir := c.path(c.tempMount)
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err == nil {
		r.SizeBytes = st.Blocks * uint64(st.Bsize)
		r.FreeBytes = st.Bavail * uint64(st.Bsize)
	}
	if err := writeProbe(dir); err != nil {
		r.Probe = err.Error()
		return
	}
	r.Probe = "ok"
}

func writeProbe(dir string) error {
	name := filepath.Join(dir, ".confidant-guestcheck-probe")
	want := []byte("confidant guestcheck probe " + strconv.Itoa(os.Getpid()) + " " + time.Now().UTC().Format(time.RFC3339Nano) + "\n")
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("creating probe file: %w", err)
	}
	defer os.Remove(name)
	if _, err := f.Write(want); err != nil {
		f.Close()
		return fmt.Errorf("writing probe file: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("syncing probe file: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("closing probe file: %w", err)
	}
	got, err := os.ReadFile(name)
	if err != nil {
		return fmt.Errorf("reading probe file back: %w", err)
	}
	if !bytes.Equal(got, want) {
		return fmt.Errorf("probe file read back %d bytes different from the %d written", len(got), len(want))
	}
	if err := os.Remove(name); err != nil {
		return fmt.Errorf("removing probe file: %w", err)
	}
	return nil
}

func (c *checker) tokenReport() tokenReport {
	r := tokenReport{Check: "token", Path: c.tokenPath}
	f, err := os.Open(c.path(c.tokenPath))
	if errors.Is(err, fs.ErrNotExist) {
		return r
	}
	r.Present = true
	if err != nil {
		r.Error = fmt.Sprintf("opening token: %v", err)
		return r
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil {
		r.Mode = fmt.Sprintf("%04o", fi.Mode().Perm())
	}
	b, err := io.ReadAll(io.LimitReader(f, maxTokenBytes+1))
	if err != nil {
		r.Error = fmt.Sprintf("reading token: %v", err)
		return r
	}
	if len(b) > maxTokenBytes {
		r.Error = fmt.Sprintf("token larger than %d bytes", maxTokenBytes)
		return r
	}
	claims, err := decodeClaims(b)
	if err != nil {
		r.Error = err.Error()
		return r
	}
	r.Claims = &claims
	return r
}
