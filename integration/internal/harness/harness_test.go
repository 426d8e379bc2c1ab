package harness

import (
	"bytes"
	"compress/gzip"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/confidant-cvm/confidant/shared/initramfs"
)

// writeInitramfs writes a gzip newc archive with an agent configuration
// like confidant-image's.
func writeInitramfs(t *testing.T, path, config string) {
	t.Helper()
	var a initramfs.Archive
	if err := a.AddFile("/etc/confidant/agent.yaml", []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := a.AddFile("/init", []byte("not really an agent"), 0o755); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := a.WriteGzip(&buf); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func gunzip(t *testing.T, path string) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestTamperInitramfs(t *testing.T) {
	dir := t.TempDir()
	src, dst := filepath.Join(dir, "initrd.img"), filepath.Join(dir, "tampered.img")
	writeInitramfs(t, src, tamperNeedle+" Measured: part of the initramfs.\nkey_name: os-disk\n")
	if _, err := TamperInitramfs(dst, src); err != nil {
		t.Fatal(err)
	}
	before, after := gunzip(t, src), gunzip(t, dst)
	if len(before) != len(after) {
		t.Fatalf("tampering changed the archive size: %d -> %d", len(before), len(after))
	}
	var diff int
	for i := range before {
		if before[i] != after[i] {
			diff++
		}
	}
	if diff != 1 {
		t.Errorf("%d bytes differ, want exactly 1", diff)
	}
	if !bytes.Contains(after, []byte("# written by confidant-image build.")) {
		t.Error("the changed byte is not the configuration comment's W")
	}

	// An initramfs without the configuration comment is refused.
	other := filepath.Join(dir, "other.img")
	writeInitramfs(t, other, "key_name: os-disk\n")
	if _, err := TamperInitramfs(filepath.Join(dir, "x.img"), other); !errors.Is(err, ErrNotTamperable) {
		t.Errorf("TamperInitramfs without the comment: %v, want ErrNotTamperable", err)
	}
	if _, err := TamperInitramfs(filepath.Join(dir, "y.img"), filepath.Join(dir, "missing.img")); err == nil {
		t.Error("TamperInitramfs of a missing file succeeded")
	}
}

func TestMentionsDir(t *testing.T) {
	tests := map[string]struct {
		cmdline string
		want    bool
	}{
		"path below":       {"qemu -chardev socket,path=/tmp/ce2e-1/hostd/state/qmp.sock", true},
		"after equals":     {"swtpm --tpmstate dir=/tmp/ce2e-1,mode=0600", true},
		"the dir at end":   {"rm -rf /tmp/ce2e-1", true},
		"a longer sibling": {"qemu /tmp/ce2e-12/hostd", false},
		"not at all":       {"sleep 100", false},
		"sibling then dir": {"x /tmp/ce2e-12 /tmp/ce2e-1/a", true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := mentionsDir(tc.cmdline, "/tmp/ce2e-1"); got != tc.want {
				t.Errorf("mentionsDir(%q) = %v, want %v", tc.cmdline, got, tc.want)
			}
		})
	}
}

// Sweep kills what runs under its directory and nothing else.
func TestSweepAndStop(t *testing.T) {
	dir, err := os.MkdirTemp("", "ce2e-sweep-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	other, err := os.MkdirTemp("", "ce2e-other-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(other)

	// A sleep started as DIR/sleep has DIR in its command line.
	sleepBin, err := exec.LookPath("sleep")
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{dir, other} {
		if err := os.Symlink(sleepBin, filepath.Join(d, "sleep")); err != nil {
			t.Fatal(err)
		}
	}
	inside, err := StartProcess("inside", filepath.Join(dir, "inside.log"), filepath.Join(dir, "sleep"), "60")
	if err != nil {
		t.Fatal(err)
	}
	outside, err := StartProcess("outside", filepath.Join(other, "outside.log"), filepath.Join(other, "sleep"), "60")
	if err != nil {
		t.Fatal(err)
	}
	defer outside.Stop(time.Second)
	killed := Sweep(dir)
	if len(killed) != 1 || !strings.Contains(killed[0], dir+"/sleep 60") {
		t.Errorf("Sweep killed %q, want the one sleep under %s", killed, dir)
	}
	select {
	case <-inside.Done():
	case <-time.After(5 * time.Second):
		t.Error("the swept process still runs")
	}
	if exited, _ := outside.Exited(); exited {
		t.Error("Sweep killed a process outside its directory")
	}
	if err := outside.Stop(5 * time.Second); err == nil {
		t.Error("Stop of a sleep killed by SIGTERM returned nil, want its exit status")
	}
	if exited, _ := outside.Exited(); !exited {
		t.Error("Stop returned before the process exited")
	}
	if got := Sweep("/"); got != nil {
		t.Errorf("Sweep(/) = %q, want a refusal", got)
	}
}

func TestGuestSpecYAML(t *testing.T) {
	s := GuestSpec{Name: "e2e-boot", Manifest: "/tmp/a b/manifest.json", Initrd: "/tmp/t.img", OSDisk: "/tmp/os.img",
		VCPUs: 1, MemoryMiB: 512, TempDiskMiB: 256, Verifier: "127.0.0.1:4443", HostData: "AAAA"}
	got := string(s.YAML())
	for _, want := range []string{"name: e2e-boot\n", "tee: sim\n", "vcpus: 1\n", "memory: 512MiB\n",
		"  manifest: \"/tmp/a b/manifest.json\"\n", "  initrd: \"/tmp/t.img\"\n", "  os_disk: \"/tmp/os.img\"\n",
		"temp_disk_size: 256MiB\n", "verifier: \"127.0.0.1:4443\"\n", "snp:\n  host_data: \"AAAA\"\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("spec lacks %q:\n%s", want, got)
		}
	}
	bare := string(GuestSpec{Name: "g", Manifest: "/m", VCPUs: 1, MemoryMiB: 128, Verifier: "127.0.0.1:1"}.YAML())
	for _, absent := range []string{"initrd", "os_disk", "temp_disk_size", "snp"} {
		if strings.Contains(bare, absent) {
			t.Errorf("bare spec has %q:\n%s", absent, bare)
		}
	}
}

func TestRepoRoot(t *testing.T) {
	root, err := RepoRoot(".")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "scripts", "mkrootfs.sh")); err != nil {
		t.Errorf("RepoRoot = %s, which has no scripts/mkrootfs.sh", root)
	}
	if _, err := RepoRoot(t.TempDir()); !errors.Is(err, ErrNoRepo) {
		t.Errorf("RepoRoot outside the repository: %v, want ErrNoRepo", err)
	}
}

func TestMakeTLS(t *testing.T) {
	f, err := MakeTLS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	tc, err := f.ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	pemBytes, err := os.ReadFile(f.Cert)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(pemBytes)
	if blk == nil {
		t.Fatal("no PEM in the certificate file")
	}
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]bool{"127.0.0.1": true, GuestVerifierIP: true, "10.0.2.2": false, "localhost": false} {
		_, err := cert.Verify(x509.VerifyOptions{Roots: tc.RootCAs, DNSName: name})
		if (err == nil) != want {
			t.Errorf("certificate for %s: verify error %v, want ok=%v", name, err, want)
		}
	}
	st, err := os.Stat(f.Key)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v, %v; want 0600", st.Mode().Perm(), err)
	}
}

func TestDecodeAudit(t *testing.T) {
	lines := `{"id":1,"time":"2026-01-01T00:00:00Z","event":"admin.key.import","outcome":"ok","key":"os-disk","reasons":[],"prev_sha256":"00"}
{"id":2,"time":"2026-01-01T00:00:01Z","event":"attest","outcome":"warning","tee":"sim-sev-snp","sub":"sim-sev-snp:ab","jti":"J","reasons":["secure boot is not enabled"]}
{"id":3,"time":"2026-01-01T00:00:02Z","event":"release","outcome":"granted","key":"os-disk","key_version":1,"jti":"J","reasons":[]}
`
	recs, err := decodeAudit([]byte(lines))
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 3 || recs[1].Subject != "sim-sev-snp:ab" || recs[1].TokenID != "J" || recs[2].KeyName != "os-disk" ||
		recs[2].Outcome != "granted" || recs[2].KeyVersion != 1 || len(recs[1].Reasons) != 1 {
		t.Errorf("decoded %+v", recs)
	}
	arr, err := decodeAudit([]byte(`[{"id":7,"event":"attest"}]`))
	if err != nil || len(arr) != 1 || arr[0].ID != 7 {
		t.Errorf("array form: %+v, %v", arr, err)
	}
	if recs, err := decodeAudit([]byte("  \n")); err != nil || recs != nil {
		t.Errorf("empty log: %+v, %v", recs, err)
	}
	if _, err := decodeAudit([]byte(`{"id":1}` + "\n{broken")); err == nil {
		t.Error("a broken line decoded")
	}
}
