package disks

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// FindMapping returns the kernel name ("dm-0") and "MAJOR:MINOR" of the
// device-mapper device called name, from sysDir/block/dm-*/dm/name.
func FindMapping(sysDir, name string) (kernelName, dev string, err error) {
	files, err := filepath.Glob(filepath.Join(sysDir, "block", "dm-*", "dm", "name"))
	if err != nil {
		return "", "", fmt.Errorf("listing device-mapper devices: %w", err)
	}
	var match []string
	for _, f := range files {
		if n, err := readTrim(f); err == nil && n == name {
			match = append(match, filepath.Dir(filepath.Dir(f)))
		}
	}
	switch len(match) {
	case 0:
		return "", "", fmt.Errorf("mapping %q: %w", name, ErrNoMapping)
	case 1:
	default:
		return "", "", fmt.Errorf("mapping %q: %w", name, ErrAmbiguous)
	}
	dev, err = readTrim(filepath.Join(match[0], "dev"))
	if err != nil {
		return "", "", fmt.Errorf("mapping %q: %w", name, err)
	}
	if _, _, err := parseDev(dev); err != nil {
		return "", "", fmt.Errorf("mapping %q: %w", name, err)
	}
	return filepath.Base(match[0]), dev, nil
}

// MapperNode makes devDir/mapper/NAME, the block node of the
// device-mapper device called name (udev's job, absent from the initramfs),
// and returns its path. It waits up to ctx's end for the device to show in
// sysfs. An existing node with the right device number is kept; any other
// file there is replaced.
func MapperNode(ctx context.Context, sysDir, devDir, name string) (string, error) {
	if name == "" || filepath.Base(name) != name || name == "." || name == ".." {
		return "", fmt.Errorf("mapping name %q: not a plain name", name)
	}
	var dev string
	for {
		var err error
		_, dev, err = FindMapping(sysDir, name)
		if err == nil {
			break
		}
		if !errors.Is(err, ErrNoMapping) {
			return "", err
		}
		select {
		case <-ctx.Done():
			return "", err
		case <-time.After(20 * time.Millisecond):
		}
	}
	major, minor, _ := parseDev(dev) // checked by FindMapping
	rdev := unix.Mkdev(major, minor)
	dir := filepath.Join(devDir, "mapper")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("creating %s: %w", dir, err)
	}
	node := filepath.Join(dir, name)
	var st unix.Stat_t
	switch err := unix.Lstat(node, &st); {
	case err == nil && st.Mode&unix.S_IFMT == unix.S_IFBLK && st.Rdev == rdev:
		return node, nil
	case err == nil:
		if err := os.Remove(node); err != nil {
			return "", fmt.Errorf("replacing %s: %w", node, err)
		}
	case !errors.Is(err, unix.ENOENT):
		return "", fmt.Errorf("checking %s: %w", node, err)
	}
	if err := unix.Mknod(node, unix.S_IFBLK|0o600, int(rdev)); err != nil {
		return "", fmt.Errorf("creating block node %s (%s): %w", node, dev, err)
	}
	return node, nil
}
