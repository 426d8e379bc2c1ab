package disks

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/confidant-cvm/confidant/agent/internal/ext4"
)

// TempDisk says where the temp disk is and what goes on it. Zero values are
// documented per field.
type TempDisk struct {
	// Device is the temp disk's node ("/dev/vdb"). Required.
	Device string
	// Name is the mapping name; "": DefaultTempName.
	Name string
	// Mount is where its filesystem is mounted: the temp mount point inside
	// the new root ("/sysroot/mnt/resource"). Required.
	Mount string
	// AllowReset: see PrepareOptions.
	AllowReset bool
	// Mkfs is the command that makes the filesystem, the device node
	// appended; nil: the built-in ext4 formatter (makeFS).
	Mkfs []string
	// Mkswap is the command that makes the swap file, its path appended;
	// nil: DefaultMkswap().
	Mkswap []string
	// SwapSize is the size of the swap file in bytes, rounded down to 4096;
	// 0: no swap.
	SwapSize int64
	// SwapFile is the swap file's name inside Mount; "": DefaultSwapFile.
	SwapFile string
	// SysDir and DevDir are where sysfs and devtmpfs live; "": DefaultSysDir,
	// DefaultDevDir.
	SysDir, DevDir string
	// Rand is the source of keys and UUIDs; nil: crypto/rand.
	Rand io.Reader
	// Log receives details; nil: discarded.
	Log *slog.Logger
}

// makeFS makes the temp disk's filesystem on node: with the mkfs command
// (node appended) when there is one, else with the built-in formatter
// (agent/internal/ext4: ext4 without a journal, the inode tables left to
// the kernel to zero after mounting, as mkfs.ext4 does by default; one
// inode per 16 KiB, 5 % reserved for root). busybox's mke2fs, the earlier
// default, writes every inode table in full through dm-crypt, which made it
// the slowest step of a TCG guest's boot, and grows with the disk.
func makeFS(ctx context.Context, node string, mkfs []string) error {
	if len(mkfs) > 0 {
		return run(ctx, mkfs, node)
	}
	f, err := os.OpenFile(node, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	size, err := f.Seek(0, io.SeekEnd)
	if err == nil {
		err = ext4.Format(f, size, ext4.Options{Label: TempLabel, ReservedPercent: 5})
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// DefaultMkswap is busybox's mkswap.
func DefaultMkswap() []string { return []string{"/bin/busybox", "mkswap"} }

// DefaultSwapFile is the swap file's name on the temp disk.
const DefaultSwapFile = "swapfile"

// TempResult says what SetupTemp did.
type TempResult struct {
	// UUID is the temp disk's LUKS2 UUID.
	UUID string
	// Found is the state the disk was in.
	Found TempState
	// Formatted is true when a new volume and filesystem were made.
	Formatted bool
	// Mapper is the mapping's node (/dev/mapper/NAME).
	Mapper string
	// Swap is the active swap file, "" without swap.
	Swap string
}

// SetupTemp prepares the temp disk (PrepareTemp), maps the volume it
// unlocked or formatted, makes the filesystem when the volume is new or holds
// none yet, mounts it at d.Mount (nosuid, nodev) and, when asked, makes and
// activates a swap file on it. The caller keeps and zeroes released.
func SetupTemp(ctx context.Context, d TempDisk, released []byte) (*TempResult, error) {
	if d.Device == "" || d.Mount == "" {
		return nil, errors.New("setting up temp disk: device and mount point are required")
	}
	log := d.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	name, sysDir, devDir := orDefault(d.Name, DefaultTempName), orDefault(d.SysDir, DefaultSysDir), orDefault(d.DevDir, DefaultDevDir)
	f, err := os.OpenFile(d.Device, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("opening temp disk: %w", err)
	}
	vol, err := PrepareTemp(f, released, PrepareOptions{AllowReset: d.AllowReset, Rand: d.Rand})
	if cerr := f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("closing temp disk: %w", cerr)
	}
	if err != nil {
		if vol != nil {
			vol.Wipe()
		}
		return nil, err
	}
	defer vol.Wipe()
	if vol.Formatted {
		log.Info("formatted temp disk", "device", d.Device, "uuid", vol.UUID, "found", vol.Found.String())
	}
	res := &TempResult{UUID: vol.UUID, Found: vol.Found, Formatted: vol.Formatted}

	v := vol.Volume(d.Device)
	if err := checkVolume(v, vol.UUID, vol.size); err != nil {
		return nil, fmt.Errorf("temp disk %s: %w", d.Device, err)
	}
	if err := v.SetupMapper(name); err != nil {
		return nil, fmt.Errorf("mapping temp disk %s as %s: %w", d.Device, name, err)
	}
	node, err := MapperNode(ctx, sysDir, devDir, name)
	if err != nil {
		unmap(name)
		return nil, fmt.Errorf("temp disk mapping: %w", err)
	}
	res.Mapper = node

	hasFS, err := HasExtFS(node)
	if err != nil {
		return nil, fmt.Errorf("temp disk: %w", err)
	}
	if vol.Formatted || !hasFS {
		// A volume of ours without a filesystem was formatted by a boot that
		// stopped before mkfs: nothing to lose.
		if err := makeFS(ctx, node, d.Mkfs); err != nil {
			return nil, fmt.Errorf("making temp disk filesystem: %w", err)
		}
		res.Formatted = true
	}
	if err := mountFS(node, d.Mount, []string{"ext4", "ext2"}, unix.MS_NOSUID|unix.MS_NODEV); err != nil {
		return nil, fmt.Errorf("temp disk: %w", err)
	}
	if d.SwapSize > 0 {
		swap := filepath.Join(d.Mount, orDefault(d.SwapFile, DefaultSwapFile))
		if err := MakeSwap(ctx, swap, d.SwapSize, orDefaultArgs(d.Mkswap, DefaultMkswap())); err != nil {
			return nil, err
		}
		if err := swapon(swap); err != nil {
			return nil, fmt.Errorf("activating swap %s: %w", swap, err)
		}
		res.Swap = swap
	}
	return res, nil
}

// swapon activates the swap file at path (swapon(2); x/sys/unix has no
// wrapper).
func swapon(path string) error {
	p, err := unix.BytePtrFromString(path)
	if err != nil {
		return err
	}
	if _, _, errno := unix.Syscall(unix.SYS_SWAPON, uintptr(unsafe.Pointer(p)), 0, 0); errno != 0 {
		return errno
	}
	return nil
}

// ext superblock: at byte 1024, magic 0xEF53 at offset 56.
const (
	extSuperblock = 1024
	extMagicOff   = 56
	extMagic      = 0xEF53
)

// HasExtFS reports whether the device or file at path holds an ext2/3/4
// superblock magic.
func HasExtFS(path string) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, fmt.Errorf("checking for a filesystem: %w", err)
	}
	defer f.Close()
	var b [2]byte
	if _, err := f.ReadAt(b[:], extSuperblock+extMagicOff); err != nil {
		if errors.Is(err, io.EOF) {
			return false, nil
		}
		return false, fmt.Errorf("checking for a filesystem: %w", err)
	}
	return binary.LittleEndian.Uint16(b[:]) == extMagic, nil
}

// MakeSwap makes a swap file of size bytes (rounded down to 4096) at path,
// mode 0600, with mkswap (the argv prefix, path appended). An existing file
// is reused when its size is right.
func MakeSwap(ctx context.Context, path string, size int64, mkswap []string) error {
	size &^= 4095
	if size < 64<<10 {
		return fmt.Errorf("swap file %s: %d bytes is too small", path, size)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("creating swap file: %w", err)
	}
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return fmt.Errorf("creating swap file: %w", err)
	}
	st, err := f.Stat()
	if err == nil && st.Size() != size {
		// Swap files must not be sparse: allocate every block.
		if err = f.Truncate(0); err == nil {
			err = allocate(f, size)
		}
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("allocating swap file %s: %w", path, err)
	}
	if err := run(ctx, mkswap, path); err != nil {
		return fmt.Errorf("making swap file: %w", err)
	}
	return nil
}

// allocate gives f size bytes of real blocks: fallocate, or zeros where the
// filesystem does not support it (ext2).
func allocate(f *os.File, size int64) error {
	err := unix.Fallocate(int(f.Fd()), 0, 0, size)
	if err == nil {
		return nil
	}
	if !errors.Is(err, unix.EOPNOTSUPP) && !errors.Is(err, unix.ENOSYS) {
		return err
	}
	zero := make([]byte, 1<<20)
	for off := int64(0); off < size; {
		n := min(int64(len(zero)), size-off)
		if _, err := f.WriteAt(zero[:n], off); err != nil {
			return err
		}
		off += n
	}
	return nil
}

// maxOutput bounds the command output kept for an error message.
const maxOutput = 2048

// run runs argv with arg appended and fails with its output when it exits
// non-zero. It is bounded by ctx and by 10 minutes.
func run(ctx context.Context, argv []string, arg string) error {
	if len(argv) == 0 {
		return errors.New("no command")
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], append(argv[1:len(argv):len(argv)], arg)...)
	cmd.Env = []string{"PATH=/bin:/sbin:/usr/bin:/usr/sbin"}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		msg := strings.Join(strings.Fields(out.String()), " ")
		if len(msg) > maxOutput {
			msg = msg[len(msg)-maxOutput:]
		}
		return fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, msg)
	}
	return nil
}

func orDefaultArgs(a, def []string) []string {
	if len(a) == 0 {
		return def
	}
	return a
}
