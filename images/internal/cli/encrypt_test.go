package cli

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/confidant-cvm/confidant/images/internal/encrypt"
)

// mkfs makes a small ext4 image (4096-byte blocks) holding /hello.txt.
func mkfs(t *testing.T, dir string) string {
	t.Helper()
	root := filepath.Join(dir, "root")
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "hello.txt"), []byte("hello\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(dir, "rootfs.img")
	if out, err := exec.Command("mke2fs", "-q", "-F", "-t", "ext4", "-b", "4096", "-d", root, img, "8M").CombinedOutput(); err != nil {
		t.Fatalf("mke2fs: %v\n%s", err, out)
	}
	return img
}

// runStreams executes confidant-image with args and returns stdout and
// stderr apart.
func runStreams(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	root := NewRoot(Env{Stdout: &out, Stderr: &errOut})
	root.SetArgs(args)
	err = root.Execute()
	return out.String(), errOut.String(), err
}

// cryptsetupTest runs cryptsetup open --test-passphrase with a key file.
func cryptsetupTest(disk, keyFile string, extra ...string) error {
	args := append([]string{"open", "--test-passphrase", "--key-file", keyFile}, extra...)
	out, err := exec.Command("cryptsetup", append(args, disk)...).CombinedOutput()
	if err != nil {
		return errors.New(strings.TrimSpace(string(out)))
	}
	return nil
}

var uuidLine = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\n$`)

func TestEncryptCommand(t *testing.T) {
	dir := t.TempDir()
	plain := mkfs(t, dir)
	key := filepath.Join(dir, "disk.key")
	disk := filepath.Join(dir, "os.img")
	rec := filepath.Join(dir, "recovery.txt")
	if err := os.WriteFile(rec, []byte("correct horse battery staple\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	stdout, stderr, err := runStreams(t, "encrypt", "--in", plain, "--out", disk, "--key-file", key, "--generate-key",
		"--recovery-passphrase-file", rec, "--label", "confidant-os")
	if err != nil {
		t.Fatalf("encrypt: %v\n%s", err, stderr)
	}
	if !uuidLine.MatchString(stdout) {
		t.Errorf("stdout = %q, want the LUKS UUID alone", stdout)
	}
	uuid := strings.TrimSpace(stdout)
	for _, want := range []string{"encrypting: 12%", "encrypting: 100% (8.0 MiB of 8.0 MiB)", "generated a new disk key in " + key, "wrote " + disk} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	st, err := os.Stat(key)
	if err != nil || st.Mode().Perm() != 0o600 || st.Size() != 32 {
		t.Fatalf("key file: %v, %v", st, err)
	}
	keyBytes, _ := os.ReadFile(key)
	if bytes.Contains([]byte(stdout+stderr), keyBytes) {
		t.Fatal("the key was printed")
	}

	// Stock cryptsetup opens keyslot 0 with the key file, keyslot 1 with the
	// recovery passphrase (cryptsetup reads a key file whole, newline too).
	if err := cryptsetupTest(disk, key, "--key-slot", "0"); err != nil {
		t.Errorf("cryptsetup with the key file: %v", err)
	}
	bare := filepath.Join(dir, "recovery.bare")
	if err := os.WriteFile(bare, []byte("correct horse battery staple"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := cryptsetupTest(disk, bare, "--key-slot", "1"); err != nil {
		t.Errorf("cryptsetup with the recovery passphrase: %v", err)
	}
	// The test can fail: another key does not open the disk.
	other := filepath.Join(dir, "other.key")
	if _, err := encrypt.CreateKeyFile(other, nil); err != nil {
		t.Fatal(err)
	}
	if err := cryptsetupTest(disk, other); err == nil {
		t.Error("cryptsetup opened the disk with another key")
	}
	if out, err := exec.Command("cryptsetup", "luksUUID", disk).Output(); err != nil || strings.TrimSpace(string(out)) != uuid {
		t.Errorf("cryptsetup luksUUID = %q, %v; want %s", out, err, uuid)
	}
	if out, err := exec.Command("cryptsetup", "luksDump", disk).Output(); err != nil || !strings.Contains(string(out), "confidant-os") {
		t.Errorf("luksDump lacks the label: %v\n%s", err, out)
	}

	// An existing key, a chosen UUID.
	const chosen = "3f1c2b6a-1111-4222-8333-444455556666"
	disk2 := filepath.Join(dir, "os2.img")
	stdout, stderr, err = runStreams(t, "encrypt", "--in", plain, "--out", disk2, "--key-file", key, "--uuid", chosen)
	if err != nil {
		t.Fatalf("encrypt with an existing key: %v\n%s", err, stderr)
	}
	if stdout != chosen+"\n" || strings.Contains(stderr, "generated") {
		t.Errorf("stdout %q, stderr %q", stdout, stderr)
	}
	if err := cryptsetupTest(disk2, key); err != nil {
		t.Errorf("cryptsetup with the existing key: %v", err)
	}
	if again, _ := os.ReadFile(key); !bytes.Equal(again, keyBytes) {
		t.Error("the key file changed")
	}
}

func TestEncryptCommandRefuses(t *testing.T) {
	dir := t.TempDir()
	plain := mkfs(t, dir)
	notFS := filepath.Join(dir, "random.img")
	if err := os.WriteFile(notFS, bytes.Repeat([]byte("x"), 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(dir, "disk.key")
	if _, err := encrypt.CreateKeyFile(key, nil); err != nil {
		t.Fatal(err)
	}
	keyBytes, _ := os.ReadFile(key)
	loose := filepath.Join(dir, "loose.key")
	if err := os.WriteFile(loose, keyBytes, 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chmod(loose, 0o644)
	emptyRec := filepath.Join(dir, "empty.txt")
	if err := os.WriteFile(emptyRec, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	newKey := filepath.Join(dir, "new.key")
	tests := map[string]struct {
		args    []string
		wantErr error
		wantOut string
	}{
		"generate over an existing key": {args: []string{"--in", plain, "--key-file", key, "--generate-key"}, wantErr: encrypt.ErrKeyFileExists},
		"key readable by others":        {args: []string{"--in", plain, "--key-file", loose}, wantErr: encrypt.ErrKeyFileMode},
		"key missing":                   {args: []string{"--in", plain, "--key-file", filepath.Join(dir, "absent")}, wantErr: os.ErrNotExist},
		"not ext4, generated key":       {args: []string{"--in", notFS, "--key-file", newKey, "--generate-key"}, wantErr: encrypt.ErrNotExt4},
		"empty recovery passphrase":     {args: []string{"--in", plain, "--key-file", key, "--recovery-passphrase-file", emptyRec}, wantErr: ErrUsage},
		"bad uuid":                      {args: []string{"--in", plain, "--key-file", key, "--uuid", "nope"}, wantOut: "UUID"},
		"missing flags":                 {args: []string{"--in", plain}, wantOut: `required flag(s) "key-file" not set`},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			outDir := t.TempDir()
			out := filepath.Join(outDir, "os.img")
			args := append([]string{"encrypt", "--out", out}, tc.args...)
			stdout, stderr, err := runStreams(t, args...)
			if err == nil {
				t.Fatalf("no error; stdout %q", stdout)
			}
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Errorf("error %v, want %v", err, tc.wantErr)
			}
			if !strings.Contains(err.Error()+stderr, tc.wantOut) {
				t.Errorf("error %q lacks %q", err.Error()+stderr, tc.wantOut)
			}
			if stdout != "" {
				t.Errorf("stdout %q after a failure", stdout)
			}
			if ents, _ := os.ReadDir(outDir); len(ents) != 0 {
				t.Errorf("a failed encrypt left %v", ents)
			}
			if _, err := os.Stat(newKey); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("a failed encrypt left its generated key")
			}
			if again, _ := os.ReadFile(key); !bytes.Equal(again, keyBytes) {
				t.Error("the existing key changed")
			}
		})
	}
}

func TestReadPassphraseFile(t *testing.T) {
	dir := t.TempDir()
	for content, want := range map[string]string{
		"pass\n":   "pass",
		"pass\r\n": "pass",
		"pass":     "pass",
		"pass\n\n": "pass\n",
		" pass ":   " pass ",
		"\n":       "",
		"":         "",
	} {
		p := filepath.Join(dir, "p")
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := readPassphraseFile(p)
		if want == "" {
			if !errors.Is(err, ErrUsage) {
				t.Errorf("%q: error %v, want ErrUsage", content, err)
			}
			continue
		}
		if err != nil || string(got) != want {
			t.Errorf("%q: got %q, %v; want %q", content, got, err, want)
		}
	}
	big := filepath.Join(dir, "big")
	if err := os.WriteFile(big, bytes.Repeat([]byte("a"), maxPassphrase+1), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := readPassphraseFile(big); !errors.Is(err, ErrUsage) {
		t.Errorf("oversize passphrase file: %v, want ErrUsage", err)
	}
}

func TestProgress(t *testing.T) {
	var lines bytes.Buffer
	p := &progress{w: &lines, label: "encrypting", last: -1}
	for done := int64(0); done <= 100<<20; done += 1 << 20 {
		p.update(done, 100<<20)
	}
	p.finish()
	got := strings.Split(strings.TrimSpace(lines.String()), "\n")
	if len(got) != 11 || got[0] != "encrypting: 0% (0.0 MiB of 100.0 MiB)" || got[10] != "encrypting: 100% (100.0 MiB of 100.0 MiB)" {
		t.Errorf("plain progress lines:\n%s", lines.String())
	}

	var bar bytes.Buffer
	p = &progress{w: &bar, tty: true, label: "encrypting", last: -1}
	p.update(0, 8)
	p.update(0, 8) // no redraw
	p.update(4, 8)
	p.update(8, 8)
	p.finish() // the line was already ended
	want := "\rencrypting [------------------------------]   0% 0.0 MiB/0.0 MiB" +
		"\rencrypting [###############---------------]  50% 0.0 MiB/0.0 MiB" +
		"\rencrypting [##############################] 100% 0.0 MiB/0.0 MiB\n"
	if bar.String() != want {
		t.Errorf("terminal bar %q\nwant %q", bar.String(), want)
	}
	if isTerminal(&bar) {
		t.Error("a buffer is a terminal")
	}
}
