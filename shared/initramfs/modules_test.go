package initramfs

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
)

// cloudKernelModules returns the modules directory of the installed Debian
// cloud kernel.
func cloudKernelModules(t *testing.T) string {
	t.Helper()
	dirs, _ := filepath.Glob("/lib/modules/*-cloud-amd64/modules.dep")
	if len(dirs) == 0 {
		t.Fatal("no cloud kernel modules under /lib/modules (install linux-image-cloud-amd64)")
	}
	slices.Sort(dirs)
	return filepath.Dir(dirs[0])
}

// TestResolveCloudKernel resolves the default module list against the real
// Debian cloud kernel and checks the load order recorded in FACTS.md.
func TestResolveCloudKernel(t *testing.T) {
	dir := cloudKernelModules(t)
	set, err := ResolveModules(os.DirFS(dir), append(DefaultModules(), "ext4", "dm-crypt"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range set.Load {
		names = append(names, m.Name)
		if _, err := os.Stat(filepath.Join(dir, m.Path)); err != nil {
			t.Errorf("module %s: %v", m.Name, err)
		}
	}
	want := []string{
		"virtio_ring", "virtio", "virtio_pci_modern_dev", "virtio_pci_legacy_dev", "virtio_pci",
		"virtio_blk", "failover", "net_failover", "virtio_net", "virtio_console", "configfs",
		"dm_mod", "dm_crypt", "xts", "ecb", "cryptd", "crypto_simd", "aesni_intel",
	}
	if !slices.Equal(names, want) {
		t.Errorf("load order\n%q\nwant\n%q", names, want)
	}
	if !slices.Equal(set.Builtin, []string{"ext4"}) {
		t.Errorf("builtin %q, want [ext4]", set.Builtin)
	}
}

func TestResolve(t *testing.T) {
	dep := strings.Join([]string{
		"kernel/a/top.ko: kernel/a/mid-dep.ko.xz kernel/a/leaf.ko.zst",
		"kernel/a/mid-dep.ko.xz: kernel/a/leaf.ko.zst",
		"kernel/a/leaf.ko.zst:",
		"kernel/b/other.ko.gz:",
		"",
	}, "\n")
	fsys := fstest.MapFS{
		"modules.dep":     {Data: []byte(dep)},
		"modules.builtin": {Data: []byte("kernel/fs/ext4/ext4.ko\nkernel/crypto/aes_generic.ko\n")},
	}
	tests := map[string]struct {
		names       []string
		wantLoad    []string
		wantBuiltin []string
		wantErr     error
		wantInErr   []string
	}{
		"deps first":      {names: []string{"top"}, wantLoad: []string{"leaf", "mid_dep", "top"}},
		"dash underscore": {names: []string{"mid_dep", "mid-dep", "top"}, wantLoad: []string{"leaf", "mid_dep", "top"}},
		"builtin":         {names: []string{"ext4", "other", "aes-generic"}, wantLoad: []string{"other"}, wantBuiltin: []string{"ext4", "aes_generic"}},
		"unknown reported together": {
			names: []string{"nope", "top", "missing2"}, wantErr: ErrUnknownModule,
			wantInErr: []string{"nope", "missing2"},
		},
		"path as name": {names: []string{"kernel/a/top.ko"}, wantErr: ErrUnknownModule},
		"empty name":   {names: []string{""}, wantErr: ErrUnknownModule},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			set, err := ResolveModules(fsys, tt.names)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("error = %v, want %v", err, tt.wantErr)
			}
			for _, s := range tt.wantInErr {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not name %s", err, s)
				}
			}
			if err != nil {
				return
			}
			var got []string
			for _, m := range set.Load {
				got = append(got, m.Name)
			}
			if !slices.Equal(got, tt.wantLoad) || !slices.Equal(set.Builtin, tt.wantBuiltin) {
				t.Errorf("load %q builtin %q, want %q %q", got, set.Builtin, tt.wantLoad, tt.wantBuiltin)
			}
		})
	}
}

func TestParseModulesDepErrors(t *testing.T) {
	tests := map[string]struct {
		dep     string
		wantErr error
	}{
		"no colon":        {dep: "kernel/a.ko\n", wantErr: ErrModulesDep},
		"not a module":    {dep: "kernel/a.txt:\n", wantErr: ErrModulesDep},
		"absolute":        {dep: "/kernel/a.ko:\n", wantErr: ErrModulesDep},
		"dotdot":          {dep: "../a.ko:\n", wantErr: ErrModulesDep},
		"dangling dep":    {dep: "kernel/a.ko: kernel/b.ko\n", wantErr: ErrModulesDep},
		"bad dep":         {dep: "kernel/a.ko: b\n", wantErr: ErrModulesDep},
		"listed twice":    {dep: "kernel/a.ko:\nkernel/x/a.ko:\n", wantErr: ErrModulesDep},
		"same name other": {dep: "kernel/a.ko: kernel/y/b.ko\nkernel/b.ko:\n", wantErr: ErrModulesDep},
		"ok with comment": {dep: "# c\nkernel/a.ko: kernel/b.ko\nkernel/b.ko:\n"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			if _, err := ParseModulesDep(strings.NewReader(tt.dep)); !errors.Is(err, tt.wantErr) {
				t.Fatalf("error = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func TestResolveCycle(t *testing.T) {
	md, err := ParseModulesDep(strings.NewReader("k/a.ko: k/b.ko\nk/b.ko: k/a.ko\n"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := md.Resolve([]string{"a"}, nil); !errors.Is(err, ErrModulesDep) {
		t.Fatalf("cycle: error = %v, want ErrModulesDep", err)
	}
}

func TestCanonicalModuleName(t *testing.T) {
	for in, want := range map[string]string{
		"dm-crypt": "dm_crypt", "kernel/drivers/md/dm-crypt.ko": "dm_crypt",
		"x.ko.zst": "x", "x.ko.xz": "x", "aesni-intel.ko.gz": "aesni_intel", "virtio_ring": "virtio_ring",
	} {
		if got := CanonicalModuleName(in); got != want {
			t.Errorf("CanonicalModuleName(%q) = %q, want %q", in, got, want)
		}
	}
}

// FuzzParseModulesDep: a hostile modules.dep never panics, and whatever
// parses resolves (or reports a cycle) without panicking.
func FuzzParseModulesDep(f *testing.F) {
	f.Add("kernel/a.ko: kernel/b.ko\nkernel/b.ko:\n", "a")
	f.Add("k/a.ko: k/b.ko\nk/b.ko: k/a.ko\n", "b")
	f.Add("k/a.ko.xz:  \n\n#x\n", "a-b")
	f.Fuzz(func(t *testing.T, dep, name string) {
		md, err := ParseModulesDep(strings.NewReader(dep))
		if err != nil {
			if !errors.Is(err, ErrModulesDep) {
				t.Fatalf("error %v does not match ErrModulesDep", err)
			}
			return
		}
		set, err := md.Resolve([]string{name, "a"}, map[string]bool{"b": true})
		if err != nil {
			return
		}
		seen := map[string]bool{}
		for _, m := range set.Load {
			if seen[m.Name] {
				t.Fatalf("%s loaded twice", m.Name)
			}
			for _, d := range md.deps[m.Name] {
				if !seen[d] {
					t.Fatalf("%s before its dependency %s", m.Name, d)
				}
			}
			seen[m.Name] = true
		}
	})
}
