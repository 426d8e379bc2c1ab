package boot

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// Mount is one filesystem to mount.
type Mount struct {
	Source string
	Target string
	FSType string
	Flags  uintptr
	Data   string
}

// EarlyMounts are the filesystems the agent mounts first: proc, sysfs,
// devtmpfs, securityfs (the TPM event log lives there) and a tmpfs on /run.
func EarlyMounts() []Mount {
	const nosuidNodevNoexec = unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC
	return []Mount{
		{Source: "proc", Target: "/proc", FSType: "proc", Flags: nosuidNodevNoexec},
		{Source: "sysfs", Target: "/sys", FSType: "sysfs", Flags: nosuidNodevNoexec},
		{Source: "devtmpfs", Target: "/dev", FSType: "devtmpfs", Flags: unix.MS_NOSUID, Data: "mode=0755"},
		{Source: "securityfs", Target: "/sys/kernel/security", FSType: "securityfs", Flags: nosuidNodevNoexec},
		{Source: "tmpfs", Target: "/run", FSType: "tmpfs", Flags: unix.MS_NOSUID | unix.MS_NODEV, Data: "mode=0755"},
	}
}

// ConfigfsMount is configfs, where configfs-tsm lives. On kernels that build
// configfs as a module it can only be mounted after the modules are loaded.
func ConfigfsMount() Mount {
	return Mount{Source: "configfs", Target: "/sys/kernel/config", FSType: "configfs",
		Flags: unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC}
}

// MountAll mounts each filesystem in order, creating missing mount points.
// A filesystem already mounted there (EBUSY) is fine.
func MountAll(ms []Mount) error {
	for _, m := range ms {
		if err := os.MkdirAll(m.Target, 0o755); err != nil {
			return fmt.Errorf("creating mount point %s: %w", m.Target, err)
		}
		err := unix.Mount(m.Source, m.Target, m.FSType, m.Flags, m.Data)
		if err != nil && !errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("mounting %s on %s: %w", m.FSType, m.Target, err)
		}
	}
	return nil
}

// ErrNotMounted: a filesystem is not mounted where it should be.
var ErrNotMounted = errors.New("not mounted")

// CheckMounted reads a mount table (/proc/mounts) and reports every
// filesystem of ms that is not mounted at its target with its type.
func CheckMounted(procMounts io.Reader, ms []Mount) error {
	have := map[string]bool{}
	sc := bufio.NewScanner(procMounts)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 3 {
			have[f[1]+" "+f[2]] = true
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("reading mount table: %w", err)
	}
	var errs []error
	for _, m := range ms {
		if !have[m.Target+" "+m.FSType] {
			errs = append(errs, fmt.Errorf("%s on %s: %w", m.FSType, m.Target, ErrNotMounted))
		}
	}
	return errors.Join(errs...)
}
