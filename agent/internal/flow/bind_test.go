package flow

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/confidant-cvm/confidant/shared/testenv"
)

// TestBindFile bind-mounts a file in a private mount namespace (on a thread
// of its own, which exits with the test's goroutine), and checks the copy
// fallback where no mount is possible.
func TestBindFile(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "init")
	if err := os.WriteFile(src, []byte("agent binary"), 0o755); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "exe")
	if err := os.Symlink(src, link); err != nil {
		t.Fatal(err)
	}

	t.Run("bind mount", func(t *testing.T) {
		testenv.RequireRoot(t, "bind-mounting in a private mount namespace")
		done := make(chan struct{})
		go func() {
			defer close(done)
			runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
			if err := unix.Unshare(unix.CLONE_NEWNS | unix.CLONE_FS); err != nil {
				t.Errorf("unshare: %v", err)
				return
			}
			if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
				t.Errorf("making mounts private: %v", err)
				return
			}
			dst := filepath.Join(dir, "run-agent")
			if err := BindFile(link, dst); err != nil {
				t.Errorf("BindFile: %v", err)
				return
			}
			b, err := os.ReadFile(dst)
			if err != nil || string(b) != "agent binary" {
				t.Errorf("bound file holds %q, %v", b, err)
			}
			mounts, _ := os.ReadFile("/proc/thread-self/mountinfo")
			var line string
			for _, l := range strings.Split(string(mounts), "\n") {
				if f := strings.Fields(l); len(f) > 5 && f[4] == dst {
					line = l
				}
			}
			if line == "" {
				t.Errorf("%s is not a mount point:\n%s", dst, mounts)
				return
			}
			if opts := strings.Split(strings.Fields(line)[5], ","); !slicesHas(opts, "ro") || !slicesHas(opts, "nosuid") || !slicesHas(opts, "nodev") {
				t.Errorf("bind mount options %v, want ro, nosuid, nodev", opts)
			}
			if err := os.WriteFile(dst, []byte("changed"), 0o755); err == nil {
				t.Error("the bound file is writable")
			}
			if err := unix.Unmount(dst, 0); err != nil {
				t.Errorf("unmounting: %v", err)
			}
		}()
		<-done
		if b, _ := os.ReadFile(src); string(b) != "agent binary" {
			t.Errorf("the source changed: %q", b)
		}
	})

	t.Run("copy where no mount is possible", func(t *testing.T) {
		// A source that is not there cannot be bound, nor copied.
		if err := BindFile(filepath.Join(dir, "none"), filepath.Join(dir, "x")); err == nil {
			t.Error("BindFile of a missing file succeeded")
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
			// Without CAP_SYS_ADMIN (capabilities are per thread) mount fails.
			hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
			var data [2]unix.CapUserData
			if err := unix.Capget(&hdr, &data[0]); err != nil {
				t.Errorf("capget: %v", err)
				return
			}
			data[0].Effective &^= 1 << unix.CAP_SYS_ADMIN
			if err := unix.Capset(&hdr, &data[0]); err != nil {
				t.Errorf("capset: %v", err)
				return
			}
			dst := filepath.Join(dir, "copied")
			if err := BindFile(link, dst); err != nil {
				t.Errorf("BindFile: %v", err)
				return
			}
			fi, err := os.Stat(dst)
			b, _ := os.ReadFile(dst)
			if err != nil || fi.Mode().Perm() != 0o755 || string(b) != "agent binary" {
				t.Errorf("copy %v %v holds %q", fi, err, b)
			}
			if err := os.WriteFile(dst, []byte("x"), 0o755); err != nil {
				t.Errorf("the copy is not a plain file: %v", err)
			}
		}()
		<-done
	})
}

func slicesHas(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}
