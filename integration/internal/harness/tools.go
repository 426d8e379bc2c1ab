package harness

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
)

// ErrMissingPrerequisite reports a system program or file the flow needs
// that is not installed. scripts/install-deps.sh installs them all.
var ErrMissingPrerequisite = errors.New("missing prerequisite (run scripts/install-deps.sh)")

// Tools are the system programs and files the whole flow needs.
type Tools struct {
	// Go builds the programs.
	Go string
	// Kernel is the guest kernel (/boot/vmlinuz-VERSION of
	// linux-image-cloud-amd64); its modules are in /lib/modules/VERSION.
	Kernel string
}

// FindTools checks for everything the flow runs — Go, QEMU, swtpm, the
// cloud kernel with its modules, busybox-static, e2fsprogs, SeaBIOS — and
// reports every missing piece at once.
func FindTools() (Tools, error) {
	var t Tools
	var missing []string
	look := func(name, pkg string) string {
		p, err := exec.LookPath(name)
		if err != nil {
			missing = append(missing, fmt.Sprintf("%s (Debian package %s)", name, pkg))
		}
		return p
	}
	t.Go = look("go", "golang, or Go from go.dev")
	look("qemu-system-x86_64", "qemu-system-x86")
	look("swtpm", "swtpm")
	look("swtpm_setup", "swtpm-tools")
	look("mke2fs", "e2fsprogs")
	look("debugfs", "e2fsprogs")
	for _, f := range []struct{ path, pkg string }{
		{"/bin/busybox", "busybox-static"},
		{"/usr/share/seabios/bios-256k.bin", "seabios"},
	} {
		if _, err := os.Stat(f.path); err != nil {
			missing = append(missing, fmt.Sprintf("%s (Debian package %s)", f.path, f.pkg))
		}
	}
	k, err := CloudKernel()
	if err != nil {
		missing = append(missing, err.Error())
	}
	t.Kernel = k
	if len(missing) > 0 {
		return t, fmt.Errorf("%w: %s", ErrMissingPrerequisite, strings.Join(missing, "; "))
	}
	return t, nil
}

// CloudKernel returns the newest /boot/vmlinuz-*-cloud-amd64 that has its
// modules (modules.dep) installed.
func CloudKernel() (string, error) {
	ks, _ := filepath.Glob("/boot/vmlinuz-*-cloud-amd64")
	slices.Sort(ks)
	for i := len(ks) - 1; i >= 0; i-- {
		v := strings.TrimPrefix(filepath.Base(ks[i]), "vmlinuz-")
		if _, err := os.Stat(filepath.Join("/lib/modules", v, "modules.dep")); err == nil {
			return ks[i], nil
		}
	}
	return "", errors.New("the cloud kernel /boot/vmlinuz-*-cloud-amd64 with its /lib/modules (Debian package linux-image-cloud-amd64)")
}

// ErrNoRepo reports that no Confidant checkout encloses the directory.
var ErrNoRepo = errors.New("not inside the Confidant repository")

// RepoRoot returns the Confidant checkout enclosing dir: the nearest parent
// with a go.mod declaring module github.com/confidant-cvm/confidant.
func RepoRoot(dir string) (string, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("finding repository root: %w", err)
	}
	for d := dir; ; d = filepath.Dir(d) {
		if f, err := os.Open(filepath.Join(d, "go.mod")); err == nil {
			mod := moduleLine(f)
			f.Close()
			if mod == "github.com/confidant-cvm/confidant" {
				return d, nil
			}
		}
		if d == filepath.Dir(d) {
			return "", fmt.Errorf("%w: %s", ErrNoRepo, dir)
		}
	}
}

func moduleLine(r io.Reader) string {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if m, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "module "); ok {
			return strings.Trim(strings.TrimSpace(m), `"`)
		}
	}
	return ""
}

// Binaries are the four programs, built from the repository.
type Binaries struct {
	Dir      string
	Verifier string
	Hostd    string
	Image    string
	Agent    string
}

// BinariesIn names the programs in dir (as make build leaves them in bin/).
func BinariesIn(dir string) Binaries {
	return Binaries{
		Dir:      dir,
		Verifier: filepath.Join(dir, "confidant-verifier"),
		Hostd:    filepath.Join(dir, "confidant-hostd"),
		Image:    filepath.Join(dir, "confidant-image"),
		Agent:    filepath.Join(dir, "confidant-agent"),
	}
}

// Check reports every program missing from b.
func (b Binaries) Check() error {
	var missing []string
	for _, p := range []string{b.Verifier, b.Hostd, b.Image, b.Agent} {
		if st, err := os.Stat(p); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
			missing = append(missing, p)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("programs not built (make build): %s", strings.Join(missing, ", "))
	}
	return nil
}

// BuildBinaries builds the four programs from the repository at repo into
// dir, the way make build does (confidant-agent static, CGO_ENABLED=0).
func BuildBinaries(ctx context.Context, goBin, repo, dir string) (Binaries, error) {
	b := BinariesIn(dir)
	run := func(env []string, args ...string) error {
		cmd := exec.CommandContext(ctx, goBin, args...)
		cmd.Dir = repo
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	if err := run(nil, "build", "-trimpath", "-o", dir+"/",
		"./verifier/cmd/confidant-verifier", "./hostd/cmd/confidant-hostd", "./images/cmd/confidant-image"); err != nil {
		return b, err
	}
	if err := run([]string{"CGO_ENABLED=0"}, "build", "-trimpath", "-o", b.Agent, "./agent/cmd/confidant-agent"); err != nil {
		return b, err
	}
	return b, b.Check()
}

// MakeRootFS builds the demo OS root filesystem image (scripts/mkrootfs.sh)
// at out.
func MakeRootFS(ctx context.Context, repo, out string, sizeMiB int) error {
	cmd := exec.CommandContext(ctx, filepath.Join(repo, "scripts", "mkrootfs.sh"), out, fmt.Sprint(sizeMiB))
	cmd.Dir = repo
	o, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("making the demo root filesystem: %w\n%s", err, o)
	}
	return nil
}
