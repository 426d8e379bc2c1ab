package uki

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
)

// ESPBootPath is where UEFI firmware looks for the boot loader of a
// removable medium on x86-64, and where MakeESP puts the UKI.
const ESPBootPath = "/EFI/BOOT/BOOTX64.EFI"

// mtoolsEnv keeps mtools from refusing an image whose geometry it finds
// odd; it reads no configuration of ours.
var mtoolsEnv = []string{"MTOOLS_SKIP_CHECK=1"}

// ESPSize is the size MakeESP gives the partition of a UKI of ukiSize
// bytes: the UKI, an eighth more and 2 MiB for the FAT's own structures,
// rounded up to whole MiB.
func ESPSize(ukiSize int64) int64 {
	const mib = 1 << 20
	return (ukiSize + ukiSize/8 + 2*mib + mib - 1) / mib * mib
}

// MakeESP writes to out (replacing it) a FAT EFI system partition image
// holding the UKI at ESPBootPath: mkfs.vfat -C, then mtools mmd and mcopy
// (no loop device, no mount).
func MakeESP(ctx context.Context, uki, out string) error {
	st, err := os.Stat(uki)
	if err != nil {
		return fmt.Errorf("making the ESP: %w", err)
	}
	if !st.Mode().IsRegular() || st.Size() == 0 {
		return fmt.Errorf("%w: the UKI %s is not a non-empty regular file", ErrInput, uki)
	}
	tmpDir, err := os.MkdirTemp(filepath.Dir(out), "."+filepath.Base(out)+".*")
	if err != nil {
		return fmt.Errorf("making the ESP: %w", err)
	}
	defer os.RemoveAll(tmpDir)
	img := filepath.Join(tmpDir, "esp.img")
	kib := strconv.FormatInt(ESPSize(st.Size())>>10, 10)
	if _, err := run(ctx, nil, "mkfs.vfat", "-C", "-n", "ESP", img, kib); err != nil {
		return fmt.Errorf("making the ESP: %w", err)
	}
	if _, err := run(ctx, mtoolsEnv, "mmd", "-i", img, "::/EFI", "::/EFI/BOOT"); err != nil {
		return fmt.Errorf("making the ESP: %w", err)
	}
	if _, err := run(ctx, mtoolsEnv, "mcopy", "-i", img, uki, "::"+ESPBootPath); err != nil {
		return fmt.Errorf("making the ESP: %w", err)
	}
	return place(img, out)
}

// ReadESPFile returns the file at path (e.g. ESPBootPath) in the FAT
// image esp, read with mtools mcopy.
func ReadESPFile(ctx context.Context, esp, path string) ([]byte, error) {
	b, err := run(ctx, mtoolsEnv, "mcopy", "-i", esp, "::"+path, "-")
	if err != nil {
		return nil, fmt.Errorf("reading %s from the ESP: %w", path, err)
	}
	return b, nil
}
