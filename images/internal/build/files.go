package build

import (
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/confidant-cvm/confidant/shared/durable"
)

func printable(s string) bool {
	for _, r := range s {
		if r < 0x20 || r > 0x7e {
			return false
		}
	}
	return true
}

// checkStatic refuses a file that is not a statically linked ELF
// executable: the initramfs has no dynamic loader or libraries.
func checkStatic(file string) error {
	f, err := elf.Open(file)
	if err != nil {
		return fmt.Errorf("%w: %s is not an ELF executable: %v", ErrSpec, file, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%w: %s is dynamically linked; the initramfs needs a static binary (busybox-static)", ErrSpec, file)
		}
	}
	return nil
}

// writeFile creates path and fills it with write.
func writeFile(path string, write func(io.Writer) error) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("creating %s: %w", filepath.Base(path), err)
	}
	if err := write(f); err != nil {
		f.Close()
		return fmt.Errorf("writing %s: %w", filepath.Base(path), err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", filepath.Base(path), err)
	}
	return nil
}

// copyFile copies src (at most limit bytes) to a new file dst.
func copyFile(dst, src string, limit int64) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("opening %s: %w", src, err)
	}
	defer in.Close()
	if st, err := in.Stat(); err != nil {
		return fmt.Errorf("inspecting %s: %w", src, err)
	} else if !st.Mode().IsRegular() || st.Size() == 0 || st.Size() > limit {
		return fmt.Errorf("%w: %s is not a non-empty regular file of at most %d bytes", ErrSpec, src, limit)
	}
	return writeFile(dst, func(w io.Writer) error {
		_, err := io.Copy(w, in)
		return err
	})
}

// digestFile returns the SHA-256 and size of a file.
func digestFile(path string) (FileDigest, error) {
	f, err := os.Open(path)
	if err != nil {
		return FileDigest{}, fmt.Errorf("hashing %s: %w", filepath.Base(path), err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return FileDigest{}, fmt.Errorf("hashing %s: %w", filepath.Base(path), err)
	}
	return FileDigest{SHA256: hex.EncodeToString(h.Sum(nil)), Size: n}, nil
}

// syncTree syncs every file in dir, then dir.
func syncTree(dir string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("syncing output: %w", err)
	}
	for _, e := range ents {
		f, err := os.Open(filepath.Join(dir, e.Name()))
		if err != nil {
			return fmt.Errorf("syncing output: %w", err)
		}
		err = f.Sync()
		f.Close()
		if err != nil {
			return fmt.Errorf("syncing %s: %w", e.Name(), err)
		}
	}
	return durable.SyncDir(dir)
}
