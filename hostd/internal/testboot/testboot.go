// Package testboot builds a bootable test guest for hostd's tests: the
// cloud kernel from /boot and a newc initramfs whose /init is spinit
// (compiled static, CGO_ENABLED=0) plus the virtio modules it loads.
package testboot

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/confidant-cvm/confidant/shared/initramfs"
)

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
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	var a initramfs.Archive
	must(a.AddDir("/dev", 0o755))
	must(a.AddCharDevice("/dev/console", 0o600, 5, 1))
	must(a.AddFile("/init", initData, 0o755))
	must(a.AddDir("/modules", 0o755))
	must(a.AddDir("/proc", 0o755))
	must(a.AddDir("/sys", 0o755))
	set, err := initramfs.ResolveModules(os.DirFS(modDir), []string{"virtio_pci", "virtio_console", "virtio_blk"})
	if err != nil {
		t.Fatalf("resolving modules: %v", err)
	}
	if len(set.Builtin) > 0 {
		t.Fatalf("modules %v built into %s: spinit loads them", set.Builtin, kernel)
	}
	var list []string
	for _, m := range set.Load {
		data, err := os.ReadFile(filepath.Join(modDir, m.Path))
		if err != nil {
			t.Fatalf("reading module: %v", err)
		}
		name := "/modules/" + filepath.Base(m.Path)
		must(a.AddFile(name, data, 0o644))
		list = append(list, name)
	}
	must(a.AddFile("/modules.list", []byte(strings.Join(list, "\n")+"\n"), 0o644))
	var buf bytes.Buffer
	must(a.WriteCPIO(&buf))
	initrd := filepath.Join(dir, "initrd.cpio")
	if err := os.WriteFile(initrd, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return Fixture{Kernel: kernel, Initrd: initrd}
}
