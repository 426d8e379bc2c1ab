package spec

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// stateDirWithSecrets makes a state directory laid out like hostd's, with
// the files a spec must never reach.
func stateDirWithSecrets(t *testing.T) string {
	t.Helper()
	state := t.TempDir()
	for _, f := range []string{"sim/vcek.key", "keys/victim.swtpm-key", "guests/victim/tpm/tpm2-00.permall"} {
		p := filepath.Join(state, f)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("secret"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return state
}

// TestSpecPathsIntoStateDirRefused: a spec that names one of hostd's own
// secrets as a kernel, initrd, firmware or disk, directly, through a
// symlink or with ".." components, is refused, naming the field.
func TestSpecPathsIntoStateDirRefused(t *testing.T) {
	state := stateDirWithSecrets(t)
	img := imageDir(t)
	links := t.TempDir()
	mustLink := func(target, name string) string {
		t.Helper()
		p := filepath.Join(links, name)
		if err := os.Symlink(target, p); err != nil {
			t.Fatal(err)
		}
		return p
	}
	fileLink := mustLink(filepath.Join(state, "sim", "vcek.key"), "vmlinuz")
	dirLink := mustLink(filepath.Join(state, "keys"), "images")
	dangling := mustLink(filepath.Join(state, "guests", "later", "os.img"), "later.img")
	linkToLink := mustLink(fileLink, "again")
	// ".." from the image directory up to the state directory, as an
	// operator's YAML would write it relative to the spec file.
	rel, err := filepath.Rel(img, filepath.Join(state, "keys", "victim.swtpm-key"))
	if err != nil {
		t.Fatal(err)
	}
	tests := map[string]struct {
		yaml      string // replaces a line of goodYAML
		field     string
		wantState bool // refused as ErrStateDir (else by the clean-path rule)
	}{
		"kernel inside":        {yaml: "  kernel: " + filepath.Join(state, "sim", "vcek.key"), field: "image.kernel", wantState: true},
		"initrd via symlink":   {yaml: "  initrd: " + fileLink, field: "image.initrd", wantState: true},
		"os disk via dir link": {yaml: "  os_disk: " + filepath.Join(dirLink, "victim.swtpm-key"), field: "image.os_disk", wantState: true},
		"kernel via ..":        {yaml: "  kernel: " + rel, field: "image.kernel", wantState: true},
		"firmware link chain":  {yaml: "firmware:\n  kind: seabios\n  path: " + linkToLink, field: "firmware.path", wantState: true},
		"dangling link":        {yaml: "  os_disk: " + dangling, field: "image.os_disk", wantState: true},
		"state dir itself":     {yaml: "  os_disk: " + state, field: "image.os_disk", wantState: true},
		"absolute with ..": {yaml: "  kernel: " + filepath.Join(img, "x") + "/../../" + strings.TrimPrefix(state, "/") + "/sim/vcek.key",
			field: "image.kernel"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			y := goodYAML
			switch {
			case strings.HasPrefix(tc.yaml, "firmware:"):
				y = strings.Replace(y, seabiosLines, tc.yaml+"\n", 1)
			default:
				key := strings.SplitN(strings.TrimSpace(tc.yaml), ":", 2)[0]
				y = replaceLine(t, y, "  "+key+":", tc.yaml)
			}
			s, err := ParseYAML([]byte(y), img)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.ResolveOutside(state); err != nil {
				t.Fatal(err)
			}
			err = s.Validate(ValidateOptions{StateDir: state})
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Validate() = %v, want ErrInvalid", err)
			}
			if errors.Is(err, ErrStateDir) != tc.wantState {
				t.Fatalf("Validate() = %v, want ErrStateDir %v", err, tc.wantState)
			}
			if !strings.Contains(err.Error(), tc.field+": ") {
				t.Fatalf("error %q does not name the field %s", err, tc.field)
			}
			if tc.wantState && !strings.Contains(err.Error(), "hostd's state directory") {
				t.Fatalf("error %q does not say why", err)
			}
		})
	}
}

func TestManifestInStateDirRefusedUnread(t *testing.T) {
	state := stateDirWithSecrets(t)
	img := imageDir(t)
	link := filepath.Join(t.TempDir(), "manifest.json")
	if err := os.Symlink(filepath.Join(state, "sim", "vcek.key"), link); err != nil {
		t.Fatal(err)
	}
	s, err := ParseYAML([]byte("name: m\ntee: sim\nvcpus: 1\nmemory: 256MiB\nverifier: 127.0.0.1:1\nimage:\n  manifest: "+link+"\n"), img)
	if err != nil {
		t.Fatal(err)
	}
	err = s.ResolveOutside(state)
	if !errors.Is(err, ErrStateDir) || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "image.manifest") {
		t.Fatalf("ResolveOutside() = %v, want ErrStateDir naming image.manifest", err)
	}
	if strings.Contains(err.Error(), "secret") {
		t.Fatalf("error leaks the file's content: %v", err)
	}
}

func TestSpecOutsideStateDirAccepted(t *testing.T) {
	state := stateDirWithSecrets(t)
	img := imageDir(t)
	// A symlink from the image directory to elsewhere outside is fine, and
	// so is a sibling whose name starts like the state directory's.
	sibling := state + "-images"
	if err := os.MkdirAll(sibling, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sibling) })
	if err := os.WriteFile(filepath.Join(sibling, "os.img"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	y := replaceLine(t, goodYAML, "  os_disk:", "  os_disk: "+filepath.Join(sibling, "os.img"))
	s, err := ParseYAML([]byte(y), img)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.ResolveOutside(state); err != nil {
		t.Fatal(err)
	}
	if err := s.Validate(ValidateOptions{StateDir: state}); err != nil {
		t.Fatalf("Validate() = %v, want a good spec accepted", err)
	}
}

func TestOpenOutside(t *testing.T) {
	state := stateDirWithSecrets(t)
	dir := t.TempDir()
	good := filepath.Join(dir, "kernel")
	if err := os.WriteFile(good, []byte("k"), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := OpenOutside(state, good, os.O_RDONLY)
	if err != nil {
		t.Fatalf("OpenOutside(good) = %v", err)
	}
	f.Close()
	// The symlink is swapped after validation: the open sees it.
	link := filepath.Join(dir, "swapped")
	if err := os.Symlink(good, link); err != nil {
		t.Fatal(err)
	}
	if err := CheckOutside(state, link); err != nil {
		t.Fatalf("CheckOutside before the swap = %v", err)
	}
	os.Remove(link)
	if err := os.Symlink(filepath.Join(state, "sim", "vcek.key"), link); err != nil {
		t.Fatal(err)
	}
	if f, err := OpenOutside(state, link, os.O_RDONLY); !errors.Is(err, ErrStateDir) {
		if f != nil {
			f.Close()
		}
		t.Fatalf("OpenOutside(swapped link) = %v, want ErrStateDir", err)
	}
}

func replaceLine(t *testing.T, y, prefix, line string) string {
	t.Helper()
	lines := strings.Split(y, "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, prefix) {
			lines[i] = line
			return strings.Join(lines, "\n")
		}
	}
	t.Fatalf("no line %q", prefix)
	return ""
}
