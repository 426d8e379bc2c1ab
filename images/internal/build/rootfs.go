package build

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// ErrMkfs means mke2fs could not make the root filesystem.
var ErrMkfs = errors.New("making the ext4 root filesystem")

// autoSize estimates an ext4 size for the tree at dir: its blocks and
// inodes with a quarter to spare, plus room for the journal and metadata,
// in whole MiB.
func autoSize(dir string) (int64, error) {
	var used int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		used += 4096 // inode and directory entry, generously
		if d.Type().IsRegular() {
			info, err := d.Info()
			if err != nil {
				return err
			}
			used += (info.Size() + 4095) / 4096 * 4096
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("sizing root filesystem: %w", err)
	}
	size := used + used/4 + 32<<20
	return (size + 1<<20 - 1) / (1 << 20) * (1 << 20), nil
}

// makeExt4 makes an ext4 image at img from the tree at dir with
// mke2fs -t ext4 -b 4096 -d: 4096-byte blocks, as the guest's dm-crypt
// device has 4096-byte sectors. size 0: autoSize. Files keep their owners
// and modes (the root directory is made root's); mtime, if not 0, dates the
// filesystem (E2FSPROGS_FAKE_TIME).
func makeExt4(ctx context.Context, dir, img string, size, mtime int64) error {
	if size == 0 {
		var err error
		if size, err = autoSize(dir); err != nil {
			return err
		}
	}
	f, err := os.OpenFile(img, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("creating root filesystem image: %w", err)
	}
	err = f.Truncate(size)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sizing root filesystem image: %w", err)
	}
	cmd := exec.CommandContext(ctx, "mke2fs", "-q", "-F", "-t", "ext4", "-b", "4096", "-m", "0",
		"-E", "root_owner=0:0", "-d", dir, img)
	cmd.Env = os.Environ()
	if mtime > 0 {
		cmd.Env = append(cmd.Env, "E2FSPROGS_FAKE_TIME="+strconv.FormatInt(mtime, 10))
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("%w from %s (%d MiB): %v: %s", ErrMkfs, dir, size>>20, err, strings.TrimSpace(string(out)))
	}
	return nil
}
