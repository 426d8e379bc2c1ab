// Package testboot builds a bootable test guest for hostd's tests: the
// cloud kernel from /boot and a newc initramfs whose /init is spinit
// (compiled static, CGO_ENABLED=0) plus the virtio modules it loads.
package testboot

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// File is one entry of the test initramfs.
type File struct {
	Name         string
	Mode         uint32 // full st_mode (type and permissions)
	Data         []byte
	RMaj, RMinor uint32
}

// WriteNewc writes a newc ("070701") cpio archive.
func WriteNewc(w io.Writer, files []File) error {
	bw := bufio.NewWriter(w)
	pad := func(n int) {
		for n%4 != 0 {
			bw.WriteByte(0)
			n++
		}
	}
	ino := uint32(1)
	put := func(f File) {
		name := f.Name + "\x00"
		fmt.Fprintf(bw, "070701%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
			ino, f.Mode, 0, 0, 1, 0, len(f.Data), 0, 0, f.RMaj, f.RMinor, len(name), 0)
		ino++
		bw.WriteString(name)
		pad(110 + len(name))
		bw.Write(f.Data)
		pad(len(f.Data))
	}
	for _, f := range files {
		put(f)
	}
	put(File{Name: "TRAILER!!!"})
	return bw.Flush()
}

// resolveModules returns the module files (relative to modDir) to load for
// names, dependencies first, from modules.dep.
func resolveModules(t testing.TB, modDir string, names ...string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(modDir, "modules.dep"))
	if err != nil {
		t.Fatalf("reading modules.dep: %v", err)
	}
	deps := map[string][]string{}
	byName := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		mod, rest, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		deps[mod] = strings.Fields(rest)
		base := strings.TrimSuffix(filepath.Base(mod), ".ko")
		byName[strings.ReplaceAll(base, "-", "_")] = mod
	}
	var order []string
	seen := map[string]bool{}
	var visit func(string)
	visit = func(mod string) {
		if seen[mod] {
			return
		}
		seen[mod] = true
		for _, d := range deps[mod] {
			visit(d)
		}
		order = append(order, mod)
	}
	for _, n := range names {
		mod, ok := byName[n]
		if !ok {
			t.Fatalf("module %s not in modules.dep (built in?)", n)
		}
		visit(mod)
	}
	return order
}

// Fixture is a kernel and a test initramfs whose /init is spinit.
type Fixture struct {
	Kernel, Initrd string
}

func cloudKernel(t testing.TB) (kernel, modDir string) {
	t.Helper()
	kernels, _ := filepath.Glob("/boot/vmlinuz-*-cloud-amd64")
	if len(kernels) == 0 {
		t.Fatal("no /boot/vmlinuz-*-cloud-amd64: install linux-image-cloud-amd64 (scripts/install-deps.sh)")
	}
	sort.Strings(kernels)
	kernel = kernels[len(kernels)-1]
	release := strings.TrimPrefix(filepath.Base(kernel), "vmlinuz-")
	return kernel, filepath.Join("/lib/modules", release)
}

// Build compiles spinit (static, CGO_ENABLED=0) and packs it with
// the virtio modules into a newc initramfs under dir.
func Build(t testing.TB, dir string) Fixture {
	t.Helper()
	kernel, modDir := cloudKernel(t)
	initBin := filepath.Join(dir, "spinit")
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", initBin, "github.com/confidant-cvm/confidant/hostd/internal/testboot/spinit")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building spinit: %v\n%s", err, out)
	}
	initData, err := os.ReadFile(initBin)
	if err != nil {
		t.Fatal(err)
	}
	files := []File{
		{Name: "dev", Mode: 0o040755},
		{Name: "dev/console", Mode: 0o020600, RMaj: 5, RMinor: 1},
		{Name: "init", Mode: 0o100755, Data: initData},
		{Name: "modules", Mode: 0o040755},
		{Name: "proc", Mode: 0o040755},
		{Name: "sys", Mode: 0o040755},
	}
	var list []string
	for _, rel := range resolveModules(t, modDir, "virtio_pci", "virtio_console") {
		data, err := os.ReadFile(filepath.Join(modDir, rel))
		if err != nil {
			t.Fatalf("reading module: %v", err)
		}
		name := "modules/" + filepath.Base(rel)
		files = append(files, File{Name: name, Mode: 0o100644, Data: data})
		list = append(list, "/"+name)
	}
	files = append(files, File{Name: "modules.list", Mode: 0o100644, Data: []byte(strings.Join(list, "\n") + "\n")})
	var buf bytes.Buffer
	if err := WriteNewc(&buf, files); err != nil {
		t.Fatal(err)
	}
	initrd := filepath.Join(dir, "initrd.cpio")
	if err := os.WriteFile(initrd, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return Fixture{Kernel: kernel, Initrd: initrd}
}
