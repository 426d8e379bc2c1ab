package boot

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/confidant-cvm/confidant/agent/internal/config"
)

// luksHeader formats a real LUKS volume with cryptsetup and returns its
// first 4 KiB.
func luksHeader(t *testing.T, typ, uuid string) []byte {
	t.Helper()
	dir := t.TempDir()
	img := filepath.Join(dir, "disk.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 20<<20); err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(dir, "key")
	if err := os.WriteFile(key, []byte("test key material"), 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"luksFormat", "--type", typ, "--batch-mode", "--uuid", uuid, "--key-file", key,
		"--pbkdf-force-iterations", "1000"}
	if typ == "luks2" {
		args = append(args, "--pbkdf", "pbkdf2")
	}
	out, err := exec.Command("cryptsetup", append(args, img)...).CombinedOutput()
	if err != nil {
		t.Fatalf("cryptsetup (apt-get install cryptsetup-bin): %v\n%s", err, out)
	}
	hdr, err := readHead(img, 4096)
	if err != nil {
		t.Fatal(err)
	}
	return hdr
}

func TestParseLUKSUUID(t *testing.T) {
	const uuid1 = "0a1b2c3d-4e5f-4a6b-8c7d-8e9fa0b1c2d3"
	const uuid2 = "ABCDEF01-2345-4678-89AB-CDEF01234567"
	luks1 := luksHeader(t, "luks1", uuid1)
	luks2 := luksHeader(t, "luks2", uuid2)
	corrupt := func(h []byte, off int, b byte) []byte {
		c := bytes.Clone(h)
		c[off] = b
		return c
	}
	tests := map[string]struct {
		hdr         []byte
		wantUUID    string
		wantVersion int
		wantErr     error
	}{
		"luks1":            {hdr: luks1, wantUUID: uuid1, wantVersion: 1},
		"luks2 lowercased": {hdr: luks2, wantUUID: strings.ToLower(uuid2), wantVersion: 2},
		"zeros":            {hdr: make([]byte, 4096), wantErr: ErrNotLUKS},
		"short":            {hdr: luks2[:200], wantErr: ErrNotLUKS},
		"magic":            {hdr: corrupt(luks2, 0, 'l'), wantErr: ErrNotLUKS},
		"secondary magic":  {hdr: append([]byte("SKUL\xba\xbe"), luks2[6:]...), wantErr: ErrNotLUKS},
		"version 3":        {hdr: corrupt(luks2, 7, 3), wantErr: ErrNotLUKS},
		"uuid not hex":     {hdr: corrupt(luks2, luksUUIDOff, 'g'), wantErr: ErrNotLUKS},
		"uuid unterminated": {
			hdr:     append(append(bytes.Clone(luks2[:luksUUIDOff]), bytes.Repeat([]byte("a"), 40)...), luks2[luksUUIDOff+40:]...),
			wantErr: ErrNotLUKS,
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			uuid, v, err := ParseLUKSUUID(tt.hdr)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("error = %v, want %v", err, tt.wantErr)
			}
			if uuid != tt.wantUUID || v != tt.wantVersion {
				t.Errorf("got %q v%d, want %q v%d", uuid, v, tt.wantUUID, tt.wantVersion)
			}
		})
	}
}

func FuzzParseLUKSUUID(f *testing.F) {
	hdr := make([]byte, luksHeaderLen)
	copy(hdr, luksMagic)
	hdr[7] = 2
	copy(hdr[luksUUIDOff:], "0a1b2c3d-4e5f-4a6b-8c7d-8e9fa0b1c2d3")
	f.Add(hdr)
	f.Add([]byte("LUKS\xba\xbe\x00\x01"))
	f.Fuzz(func(t *testing.T, b []byte) {
		uuid, v, err := ParseLUKSUUID(b)
		if err != nil {
			if !errors.Is(err, ErrNotLUKS) || uuid != "" {
				t.Fatalf("error %v with uuid %q", err, uuid)
			}
			return
		}
		if (v != 1 && v != 2) || !uuidRE.MatchString(uuid) {
			t.Fatalf("accepted version %d uuid %q", v, uuid)
		}
	})
}

// tree is a fake sysfs and /dev for Devices.
type tree struct {
	t   *testing.T
	sys string
	dev string
	d   Devices
}

func newTree(t *testing.T) *tree {
	root := t.TempDir()
	tr := &tree{t: t, sys: filepath.Join(root, "sys"), dev: filepath.Join(root, "dev")}
	tr.d = Devices{SysDir: tr.sys, DevDir: tr.dev, Poll: 5 * time.Millisecond}
	tr.mkdir(filepath.Join(tr.sys, "class/block"))
	tr.mkdir(tr.dev)
	return tr
}

func (tr *tree) mkdir(p string) {
	if err := os.MkdirAll(p, 0o755); err != nil {
		tr.t.Fatal(err)
	}
}

func (tr *tree) write(p string, data []byte) {
	tr.mkdir(filepath.Dir(p))
	if err := os.WriteFile(p, data, 0o644); err != nil {
		tr.t.Fatal(err)
	}
}

// disk adds a block device the way sysfs shows it: the device directory
// under devices/, a class/block symlink, and a node in /dev holding content.
// parent names the disk of a partition.
func (tr *tree) disk(name, parent, majmin string, size string, content []byte) {
	devDir := filepath.Join(tr.sys, "devices/pci0000:00/virtio", name)
	if parent != "" {
		devDir = filepath.Join(tr.sys, "devices/pci0000:00/virtio", parent, name)
		tr.write(filepath.Join(devDir, "partition"), []byte("1\n"))
	}
	tr.write(filepath.Join(devDir, "size"), []byte(size+"\n"))
	tr.write(filepath.Join(devDir, "dev"), []byte(majmin+"\n"))
	if err := os.Symlink(devDir, filepath.Join(tr.sys, "class/block", name)); err != nil {
		tr.t.Fatal(err)
	}
	tr.write(filepath.Join(tr.dev, name), content)
}

const osUUID = "3f1c2b6a-1111-4222-8333-444455556666"

func TestFindLUKS(t *testing.T) {
	hdr := luksHeader(t, "luks2", osUUID)
	ctx := func(t *testing.T) context.Context {
		c, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		t.Cleanup(cancel)
		return c
	}
	t.Run("found", func(t *testing.T) {
		tr := newTree(t)
		tr.disk("vda", "", "254:0", "40960", make([]byte, 4096))
		tr.disk("vda1", "vda", "254:1", "40000", hdr)
		tr.disk("vdb", "", "254:16", "16384", make([]byte, 4096))
		tr.disk("loop0", "", "7:0", "0", hdr) // empty loop device: skipped
		bd, err := tr.d.FindLUKS(ctx(t), strings.ToUpper(osUUID))
		if err != nil {
			t.Fatal(err)
		}
		if bd.Name != "vda1" || bd.Path != filepath.Join(tr.dev, "vda1") || bd.Dev != "254:1" || bd.Parent != "vda" || bd.LUKSUUID != osUUID {
			t.Errorf("found %+v", bd)
		}
	})
	t.Run("appears later", func(t *testing.T) {
		tr := newTree(t)
		go func() {
			time.Sleep(30 * time.Millisecond)
			tr.disk("vda", "", "254:0", "40960", hdr)
		}()
		if _, err := tr.d.FindLUKS(ctx(t), osUUID); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("not found", func(t *testing.T) {
		tr := newTree(t)
		tr.disk("vda", "", "254:0", "40960", luksHeader(t, "luks2", "99999999-8888-4777-8666-555555555555"))
		tr.disk("vdb", "", "254:16", "16384", make([]byte, 4096))
		_, err := tr.d.FindLUKS(ctx(t), osUUID)
		if !errors.Is(err, ErrNotFound) {
			t.Fatalf("error = %v, want ErrNotFound", err)
		}
		if !strings.Contains(err.Error(), "seen: vda LUKS 99999999-8888-4777-8666-555555555555, vdb") {
			t.Errorf("error does not list what was seen: %v", err)
		}
	})
	t.Run("two disks with the UUID", func(t *testing.T) {
		tr := newTree(t)
		tr.disk("vda", "", "254:0", "40960", hdr)
		tr.disk("vdb", "", "254:16", "40960", hdr)
		if _, err := tr.d.FindLUKS(ctx(t), osUUID); !errors.Is(err, ErrAmbiguous) {
			t.Fatalf("error = %v, want ErrAmbiguous", err)
		}
	})
}

func TestCheckDistinct(t *testing.T) {
	devs := []BlockDevice{
		{Name: "vda", Dev: "254:0"}, {Name: "vda1", Dev: "254:1", Parent: "vda"},
		{Name: "vda2", Dev: "254:2", Parent: "vda"}, {Name: "vdb", Dev: "254:16"},
	}
	osWhole := BlockDevice{Name: "vda", Dev: "254:0"}
	osPart := BlockDevice{Name: "vda1", Dev: "254:1", Parent: "vda"}
	tests := map[string]struct {
		os      BlockDevice
		temp    string
		wantErr error
	}{
		"other disk":                 {os: osWhole, temp: "254:16"},
		"same disk":                  {os: osWhole, temp: "254:0", wantErr: ErrSameDisk},
		"same partition":             {os: osPart, temp: "254:1", wantErr: ErrSameDisk},
		"sibling partition":          {os: osPart, temp: "254:2", wantErr: ErrSameDisk},
		"whole disk of OS partition": {os: osPart, temp: "254:0", wantErr: ErrSameDisk},
		"partition of OS disk":       {os: osWhole, temp: "254:1", wantErr: ErrSameDisk},
		"other disk, OS partition":   {os: osPart, temp: "254:16"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			if err := (Devices{}).CheckDistinct(tt.os, tt.temp, devs); !errors.Is(err, tt.wantErr) {
				t.Fatalf("error = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func TestWaitBlock(t *testing.T) {
	tr := newTree(t)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	node := filepath.Join(tr.dev, "vdb")
	if err := unix.Mknod(node, unix.S_IFBLK|0o600, int(unix.Mkdev(254, 16))); err != nil {
		t.Fatalf("mknod (the test needs root): %v", err)
	}
	if dev, err := tr.d.WaitBlock(ctx, node); err != nil || dev != "254:16" {
		t.Errorf("block node: %q, %v", dev, err)
	}
	tr.write(filepath.Join(tr.dev, "file"), []byte("x"))
	if _, err := tr.d.WaitBlock(ctx, filepath.Join(tr.dev, "file")); !errors.Is(err, ErrNotBlock) {
		t.Errorf("regular file: error = %v, want ErrNotBlock", err)
	}
	if _, err := tr.d.WaitBlock(ctx, filepath.Join(tr.dev, "vdc")); !errors.Is(err, ErrNotFound) {
		t.Errorf("missing: error = %v, want ErrNotFound", err)
	}
}

func (tr *tree) port(dir, name string, node bool) {
	tr.write(filepath.Join(tr.sys, "class/virtio-ports", dir, "name"), []byte(name+"\n"))
	if node {
		tr.write(filepath.Join(tr.dev, dir), nil)
	}
}

func TestFindTEE(t *testing.T) {
	tests := map[string]struct {
		setup    func(tr *tree)
		kind     config.TEE
		wantKind config.TEE
		wantPath string
		wantErr  error
	}{
		"sim port": {
			setup: func(tr *tree) { tr.port("vport1p1", "other", true); tr.port("vport1p2", "confidant.sp", true) },
			kind:  config.TEESim, wantKind: config.TEESim, wantPath: "dev/vport1p2",
		},
		"sim port without node": {
			setup: func(tr *tree) { tr.port("vport1p1", "confidant.sp", false) },
			kind:  config.TEESim, wantErr: ErrNotFound,
		},
		"sim port twice": {
			setup: func(tr *tree) { tr.port("vport1p1", "confidant.sp", true); tr.port("vport2p1", "confidant.sp", true) },
			kind:  config.TEESim, wantErr: ErrAmbiguous,
		},
		"sim port missing": {kind: config.TEESim, wantErr: ErrNotFound},
		"sim port under a longer name": {
			setup: func(tr *tree) { tr.port("vport1p1", "confidant.sp2", true) },
			kind:  config.TEESim, wantErr: ErrNotFound,
		},
		"auto prefers configfs-tsm": {
			setup: func(tr *tree) {
				tr.mkdir(filepath.Join(tr.sys, "kernel/config/tsm/report"))
				tr.write(filepath.Join(tr.dev, "sev-guest"), nil)
			},
			kind: config.TEEAuto, wantKind: config.TEEConfigfsTSM, wantPath: "sys/kernel/config/tsm/report",
		},
		"auto sev-guest": {
			setup: func(tr *tree) { tr.write(filepath.Join(tr.dev, "sev-guest"), nil) },
			kind:  config.TEEAuto, wantKind: config.TEESEVGuest, wantPath: "dev/sev-guest",
		},
		"auto tdx": {
			setup: func(tr *tree) { tr.write(filepath.Join(tr.dev, "tdx_guest"), nil) },
			kind:  config.TEEAuto, wantKind: config.TEETDXGuest, wantPath: "dev/tdx_guest",
		},
		"auto never picks the simulation": {
			setup: func(tr *tree) { tr.port("vport1p1", "confidant.sp", true) },
			kind:  config.TEEAuto, wantErr: ErrNoTEE,
		},
		"explicit kind does not fall back": {
			setup: func(tr *tree) { tr.write(filepath.Join(tr.dev, "sev-guest"), nil) },
			kind:  config.TEETDXGuest, wantErr: ErrNoTEE,
		},
		"unknown kind": {kind: "sgx", wantErr: ErrNoTEE},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			tr := newTree(t)
			if tt.setup != nil {
				tt.setup(tr)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			defer cancel()
			got, err := tr.d.FindTEE(ctx, tt.kind, "confidant.sp")
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("error = %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			root := filepath.Dir(tr.sys)
			if got.Kind != tt.wantKind || got.Path != filepath.Join(root, tt.wantPath) {
				t.Errorf("got %+v, want %s at %s", got, tt.wantKind, tt.wantPath)
			}
		})
	}
}
