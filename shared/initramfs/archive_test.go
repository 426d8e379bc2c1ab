package initramfs

import (
	"bytes"
	"errors"
	"io/fs"
	"slices"
	"testing"
)

func TestArchiveErrors(t *testing.T) {
	tests := map[string]struct {
		run     func(a *Archive) error
		wantErr error
	}{
		"relative":      {run: func(a *Archive) error { return a.AddFile("etc/x", nil, 0o644) }, wantErr: ErrBadPath},
		"unclean":       {run: func(a *Archive) error { return a.AddFile("/etc/../x", nil, 0o644) }, wantErr: ErrBadPath},
		"trailing /":    {run: func(a *Archive) error { return a.AddDir("/etc/", 0o755) }, wantErr: ErrBadPath},
		"root":          {run: func(a *Archive) error { return a.AddDir("/", 0o755) }, wantErr: ErrBadPath},
		"NUL":           {run: func(a *Archive) error { return a.AddFile("/a\x00", nil, 0o644) }, wantErr: ErrBadPath},
		"empty symlink": {run: func(a *Archive) error { return a.AddSymlink("/a", "") }, wantErr: ErrBadPath},
		"duplicate file": {
			run: func(a *Archive) error {
				mustOK(t, a.AddFile("/init", []byte("a"), 0o755))
				return a.AddFile("/init", []byte("b"), 0o755)
			},
			wantErr: ErrExists,
		},
		"file over dir": {
			run: func(a *Archive) error {
				mustOK(t, a.AddFile("/etc/x", nil, 0o644))
				return a.AddFile("/etc", nil, 0o644)
			},
			wantErr: ErrExists,
		},
		"explicit dir twice": {
			run: func(a *Archive) error {
				mustOK(t, a.AddDir("/etc", 0o755))
				return a.AddDir("/etc", 0o700)
			},
			wantErr: ErrExists,
		},
		"under a file": {
			run: func(a *Archive) error {
				mustOK(t, a.AddFile("/init", nil, 0o755))
				return a.AddFile("/init/x", nil, 0o644)
			},
			wantErr: ErrNotDir,
		},
		"mtime range": {
			run: func(a *Archive) error {
				a.Mtime = 1 << 32
				return a.AddFile("/x", nil, 0o644)
			},
			wantErr: ErrFieldRange,
		},
		"implicit dir then explicit": {
			run: func(a *Archive) error {
				mustOK(t, a.AddFile("/etc/x", nil, 0o644))
				return a.AddDir("/etc", 0o700)
			},
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			if err := tt.run(&Archive{}); !errors.Is(err, tt.wantErr) {
				t.Fatalf("error = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func TestArchiveOrderAndOwners(t *testing.T) {
	var a Archive
	a.Mtime = 42
	// Added out of order; "a-b" sorts between "a" and "a/b".
	mustOK(t, a.AddFile("/a/b", []byte("1"), 0o644))
	mustOK(t, a.AddFile("/a-b", []byte("2"), 0o600))
	mustOK(t, a.AddDir("/a", 0o700))
	mustOK(t, a.AddFile("/z/y/x", []byte("3"), 0o755|fs.ModeSetuid))
	var buf bytes.Buffer
	mustOK(t, a.WriteCPIO(&buf))
	es := readNewc(t, buf.Bytes())
	var names []string
	for i, e := range es {
		names = append(names, e.Name)
		if e.UID != 0 || e.GID != 0 || e.Mtime != 42 || e.Ino != uint32(i+1) {
			t.Errorf("%s: uid %d gid %d mtime %d ino %d", e.Name, e.UID, e.GID, e.Mtime, e.Ino)
		}
	}
	want := []string{"a", "a-b", "a/b", "z", "z/y", "z/y/x"}
	if !slices.Equal(names, want) {
		t.Errorf("order %q, want %q", names, want)
	}
	m := byName(es)
	if m["a"].Mode != TypeDir|0o700 || m["a"].Nlink != 2 {
		t.Errorf("explicit dir a: mode %o nlink %d", m["a"].Mode, m["a"].Nlink)
	}
	if m["z/y"].Mode != TypeDir|0o755 {
		t.Errorf("implicit dir z/y: mode %o", m["z/y"].Mode)
	}
	if m["z/y/x"].Mode != TypeReg|0o4755 {
		t.Errorf("setuid file: mode %o", m["z/y/x"].Mode)
	}
}

// TestArchiveReproducible: the same content gives the same bytes whatever
// the order it was added in, and any change of content, mode or mtime
// changes the bytes.
func TestArchiveReproducible(t *testing.T) {
	build := func(mtime int64, order []string, content map[string]string, perm fs.FileMode) []byte {
		a := &Archive{Mtime: mtime}
		for _, name := range order {
			mustOK(t, a.AddFile(name, []byte(content[name]), perm))
		}
		var buf bytes.Buffer
		mustOK(t, a.WriteGzip(&buf))
		return buf.Bytes()
	}
	content := map[string]string{"/init": "agent", "/etc/confidant/agent.yaml": "a: 1\n", "/lib/x.ko": "module"}
	order := []string{"/init", "/etc/confidant/agent.yaml", "/lib/x.ko"}
	ref := build(0, order, content, 0o644)
	if got := build(0, []string{"/lib/x.ko", "/init", "/etc/confidant/agent.yaml"}, content, 0o644); !bytes.Equal(got, ref) {
		t.Error("insertion order changed the output")
	}
	if got := build(0, order, content, 0o644); !bytes.Equal(got, ref) {
		t.Error("second build differs")
	}
	changed := map[string]string{"/init": "agent", "/etc/confidant/agent.yaml": "a: 2\n", "/lib/x.ko": "module"}
	if got := build(0, order, changed, 0o644); bytes.Equal(got, ref) {
		t.Error("one changed byte did not change the output")
	}
	if got := build(1, order, content, 0o644); bytes.Equal(got, ref) {
		t.Error("a changed mtime did not change the output")
	}
	if got := build(0, order, content, 0o640); bytes.Equal(got, ref) {
		t.Error("a changed mode did not change the output")
	}
	// The gzip header carries no time and no name.
	if ref[0] != 0x1f || ref[1] != 0x8b || ref[3] != 0 || !bytes.Equal(ref[4:8], []byte{0, 0, 0, 0}) {
		t.Errorf("gzip header % x: want no flags and mtime 0", ref[:10])
	}
	if es := readNewc(t, gunzip(t, ref)); len(es) != 6 {
		t.Errorf("gzip archive has %d entries, want 6: %v", len(es), es)
	}
}
