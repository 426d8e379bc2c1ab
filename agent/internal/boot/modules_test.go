package boot

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestReadModuleList(t *testing.T) {
	good := "# load order\n/lib/modules/v/kernel/a.ko\n\n/lib/modules/v/kernel/dm-crypt.ko.xz\n"
	paths, err := ReadModuleList(strings.NewReader(good))
	if err != nil || !slices.Equal(paths, []string{"/lib/modules/v/kernel/a.ko", "/lib/modules/v/kernel/dm-crypt.ko.xz"}) {
		t.Errorf("got %q, %v", paths, err)
	}
	for _, bad := range []string{"kernel/a.ko\n", "/lib/a.txt\n", "/lib/../a.ko\n", "/lib/a.ko extra\n"} {
		if _, err := ReadModuleList(strings.NewReader(bad)); !errors.Is(err, ErrModuleList) {
			t.Errorf("%q: error = %v, want ErrModuleList", bad, err)
		}
	}
}

func TestModuleName(t *testing.T) {
	for in, want := range map[string]string{
		"/lib/modules/v/kernel/drivers/md/dm-crypt.ko": "dm_crypt",
		"/x/aesni-intel.ko.zst":                        "aesni_intel",
		"/x/virtio_ring.ko.xz":                         "virtio_ring",
	} {
		if got := ModuleName(in); got != want {
			t.Errorf("ModuleName(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestModuleLoader checks how finit_module's results are read. The system
// call itself is exercised by the QEMU boot test; here it is replaced, since
// the real one would load modules into the test host's kernel.
func TestModuleLoader(t *testing.T) {
	dir := t.TempDir()
	file := func(name string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("\x7fELF"), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	a, b, c, xz := file("a.ko"), file("b-x.ko"), file("c.ko"), file("d.ko.xz")
	tests := map[string]struct {
		paths     []string
		errs      map[string]error // by base name
		want      []ModuleStatus
		wantErr   error
		wantFlags int
	}{
		"loaded":         {paths: []string{a, b}, want: []ModuleStatus{Loaded, Loaded}},
		"already loaded": {paths: []string{a, b}, errs: map[string]error{"a.ko": unix.EEXIST}, want: []ModuleStatus{AlreadyLoaded, Loaded}},
		"no device":      {paths: []string{a, b}, errs: map[string]error{"b-x.ko": unix.ENODEV}, want: []ModuleStatus{Loaded, NoDevice}},
		"error stops": {
			paths: []string{a, b, c}, errs: map[string]error{"b-x.ko": unix.ENOENT},
			want: []ModuleStatus{Loaded}, wantErr: unix.ENOENT,
		},
		"signature rejected": {paths: []string{a}, errs: map[string]error{"a.ko": unix.EKEYREJECTED}, wantErr: unix.EKEYREJECTED},
		"missing file":       {paths: []string{filepath.Join(dir, "nope.ko")}, wantErr: os.ErrNotExist},
		"compressed flag":    {paths: []string{xz}, want: []ModuleStatus{Loaded}, wantFlags: unix.MODULE_INIT_COMPRESSED_FILE},
		"kernel cannot decompress": {
			paths: []string{xz}, errs: map[string]error{"d.ko.xz": unix.EOPNOTSUPP}, wantErr: ErrKernelDecompress,
			wantFlags: unix.MODULE_INIT_COMPRESSED_FILE,
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			var flags []int
			l := NewModuleLoaderWith(func(fd int, params string, fl int) error {
				flags = append(flags, fl)
				var st unix.Stat_t
				if err := unix.Fstat(fd, &st); err != nil || params != "" {
					t.Fatalf("fd %d: %v, params %q", fd, err, params)
				}
				p, _ := os.Readlink(filepath.Join("/proc/self/fd", strconv.Itoa(fd)))
				return tt.errs[filepath.Base(p)]
			})
			res, err := l.Load(tt.paths)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("error = %v, want %v", err, tt.wantErr)
			}
			var got []ModuleStatus
			for _, r := range res {
				got = append(got, r.Status)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("statuses %v, want %v", got, tt.want)
			}
			if len(flags) > 0 && flags[0] != tt.wantFlags {
				t.Errorf("flags %#x, want %#x", flags[0], tt.wantFlags)
			}
		})
	}
}

func TestCheckLive(t *testing.T) {
	procModules := "dm_crypt 61440 0 - Live 0x0000000000000000\n" +
		"dm_mod 184320 1 dm_crypt, Live 0x0000000000000000\n" +
		"virtio_net 69632 0 - Loading 0x0000000000000000\n"
	if err := CheckLive(strings.NewReader(procModules), []string{"dm_crypt", "dm_mod"}); err != nil {
		t.Errorf("live modules: %v", err)
	}
	err := CheckLive(strings.NewReader(procModules), []string{"dm_crypt", "virtio_net", "xts"})
	if !errors.Is(err, ErrModuleNotLive) || !strings.Contains(err.Error(), "virtio_net") || !strings.Contains(err.Error(), "xts") {
		t.Errorf("error = %v, want ErrModuleNotLive naming virtio_net and xts", err)
	}
}

func TestCheckMounted(t *testing.T) {
	mounts := "proc /proc proc rw,nosuid 0 0\nsysfs /sys sysfs rw 0 0\ndevtmpfs /dev devtmpfs rw 0 0\n"
	ms := []Mount{{Target: "/proc", FSType: "proc"}, {Target: "/sys", FSType: "sysfs"}, {Target: "/dev", FSType: "devtmpfs"}}
	if err := CheckMounted(strings.NewReader(mounts), ms); err != nil {
		t.Errorf("all mounted: %v", err)
	}
	err := CheckMounted(strings.NewReader(mounts), append(ms,
		Mount{Target: "/sys/kernel/security", FSType: "securityfs"}, Mount{Target: "/run", FSType: "proc"}))
	if !errors.Is(err, ErrNotMounted) || !strings.Contains(err.Error(), "securityfs") || !strings.Contains(err.Error(), "proc on /run") {
		t.Errorf("error = %v, want ErrNotMounted for securityfs and /run", err)
	}
}

func TestSplitDeferred(t *testing.T) {
	const k = "/lib/modules/6.1.0-56-cloud-amd64/kernel/"
	all := []string{
		k + "drivers/virtio/virtio_ring.ko", k + "drivers/block/virtio_blk.ko", k + "drivers/net/virtio_net.ko",
		k + "fs/configfs/configfs.ko",
		k + "drivers/md/dm-mod.ko", k + "drivers/md/dm-crypt.ko", k + "crypto/xts.ko", k + "crypto/ecb.ko",
		k + "crypto/cryptd.ko", k + "arch/x86/crypto/aesni-intel.ko.xz",
	}
	tests := map[string]struct {
		paths     []string
		wantLater int
	}{
		"the image's list":  {paths: all, wantLater: 6},
		"nothing deferable": {paths: all[:4]},
		"all deferrable":    {paths: all[4:], wantLater: 6},
		"empty":             {},
		// A cipher that an early module comes after stays early.
		"cipher before a TEE driver": {
			paths:     []string{k + "crypto/gcm.ko", k + "drivers/virt/coco/sev-guest/sev-guest.ko", k + "drivers/md/dm-mod.ko"},
			wantLater: 1,
		},
		"arch code outside crypto": {paths: []string{k + "drivers/md/dm-mod.ko", k + "arch/x86/kvm/kvm.ko"}},
		"md outside kernel/":       {paths: []string{"/opt/drivers/md/x.ko"}},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			now, later := SplitDeferred(tt.paths)
			if len(later) != tt.wantLater || !slices.Equal(append(slices.Clone(now), later...), tt.paths) {
				t.Errorf("SplitDeferred = %q, %q; want the last %d deferred", now, later, tt.wantLater)
			}
		})
	}
}
