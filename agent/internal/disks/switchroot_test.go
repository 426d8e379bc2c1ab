package disks

import (
	"errors"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// fakeRoot records the system calls of SwitchRoot.
type fakeRoot struct {
	calls   []string
	fail    map[string]error
	rootDev uint64
	newDev  uint64
	noInit  bool
}

func (f *fakeRoot) rec(call string) error {
	f.calls = append(f.calls, call)
	return f.fail[call]
}

func (f *fakeRoot) Stat(p string, st *unix.Stat_t) error {
	st.Dev = f.rootDev
	if p != "/" {
		st.Dev = f.newDev
	}
	return nil
}

func (f *fakeRoot) Lstat(p string, _ *unix.Stat_t) error {
	if f.noInit {
		return unix.ENOENT
	}
	return f.rec("lstat " + p)
}
func (f *fakeRoot) Mkdir(p string, _ uint32) error { return f.rec("mkdir " + p) }
func (f *fakeRoot) Mount(source, target, _ string, flags uintptr, _ string) error {
	if flags != unix.MS_MOVE {
		return errors.New("not a move")
	}
	return f.rec("move " + source + " " + target)
}
func (f *fakeRoot) Chdir(p string) error  { return f.rec("chdir " + p) }
func (f *fakeRoot) Chroot(p string) error { return f.rec("chroot " + p) }
func (f *fakeRoot) Exec(argv0 string, argv, _ []string) error {
	return f.rec("exec " + argv0 + " " + strings.Join(argv, ","))
}

func TestSwitchRoot(t *testing.T) {
	full := []string{
		"lstat /sysroot/sbin/init",
		"mkdir /sysroot/dev", "move /dev /sysroot/dev",
		"mkdir /sysroot/proc", "move /proc /sysroot/proc",
		"mkdir /sysroot/sys", "move /sys /sysroot/sys",
		"mkdir /sysroot/run", "move /run /sysroot/run",
		"chdir /sysroot", "move /sysroot /", "chroot .", "chdir /",
		"exec /sbin/init /sbin/init",
	}
	tests := map[string]struct {
		root      fakeRoot
		newRoot   string
		wantCalls []string
		wantErr   bool
	}{
		"ok": {root: fakeRoot{rootDev: 1, newDev: 2}, wantCalls: full},
		"directories exist": {
			root:      fakeRoot{rootDev: 1, newDev: 2, fail: map[string]error{"mkdir /sysroot/dev": unix.EEXIST, "mkdir /sysroot/run": unix.EEXIST}},
			wantCalls: full,
		},
		"nothing on /run": {
			root:      fakeRoot{rootDev: 1, newDev: 2, fail: map[string]error{"move /run /sysroot/run": unix.EINVAL}},
			wantCalls: full,
		},
		"not a mount point": {root: fakeRoot{rootDev: 1, newDev: 1}, wantErr: true},
		"no init":           {root: fakeRoot{rootDev: 1, newDev: 2, noInit: true}, wantErr: true},
		"relative root":     {root: fakeRoot{rootDev: 1, newDev: 2}, newRoot: "sysroot", wantErr: true},
		"root is /":         {root: fakeRoot{rootDev: 1, newDev: 2}, newRoot: "/", wantErr: true},
		"moving /proc fails": {
			root:      fakeRoot{rootDev: 1, newDev: 2, fail: map[string]error{"move /proc /sysroot/proc": unix.EBUSY}},
			wantCalls: full[:5],
			wantErr:   true,
		},
		"exec fails": {
			root:      fakeRoot{rootDev: 1, newDev: 2, fail: map[string]error{"exec /sbin/init /sbin/init": unix.ENOEXEC}},
			wantCalls: full,
			wantErr:   true,
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			newRoot := tt.newRoot
			if newRoot == "" {
				newRoot = "/sysroot"
			}
			err := switcher{sys: &tt.root}.switchRoot(newRoot, DefaultInit, nil, nil)
			if (err != nil) != tt.wantErr {
				t.Fatalf("switchRoot = %v, want error %v", err, tt.wantErr)
			}
			if strings.Join(tt.root.calls, "\n") != strings.Join(tt.wantCalls, "\n") {
				t.Errorf("calls:\n%s\nwant:\n%s", strings.Join(tt.root.calls, "\n"), strings.Join(tt.wantCalls, "\n"))
			}
		})
	}
}
