package uki

import (
	"bytes"
	"context"
	"debug/pe"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// cloudKernel is the installed Debian cloud kernel.
func cloudKernel(t *testing.T) string {
	t.Helper()
	ks, _ := filepath.Glob("/boot/vmlinuz-*-cloud-amd64")
	if len(ks) == 0 {
		t.Fatal("no cloud kernel (install linux-image-cloud-amd64)")
	}
	slices.Sort(ks)
	return ks[0]
}

// NewTestPair makes an RSA key (unencrypted PEM) and a self-signed
// certificate with openssl, as an image builder would.
func newTestPair(t *testing.T, dir, name string) (key, cert string) {
	t.Helper()
	key, cert = filepath.Join(dir, name+".key"), filepath.Join(dir, name+".pem")
	out, err := exec.Command("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
		"-days", "3650", "-subj", "/CN="+name+" Secure Boot test key/").CombinedOutput()
	if err != nil {
		t.Fatalf("openssl req: %v\n%s", err, out)
	}
	return key, cert
}

type ukiFixture struct {
	dir, kernel, initrd string
	in                  Inputs
}

func newUKIFixture(t *testing.T) ukiFixture {
	t.Helper()
	dir := t.TempDir()
	initrd := filepath.Join(dir, "initrd.img")
	if err := os.WriteFile(initrd, bytes.Repeat([]byte("initramfs "), 10000), 0o644); err != nil {
		t.Fatal(err)
	}
	k := cloudKernel(t)
	return ukiFixture{dir: dir, kernel: k, initrd: initrd, in: Inputs{
		Kernel: k, Initrd: initrd, Cmdline: []byte("console=ttyS0 panic=-1"),
		OSRelease: []byte("ID=confidant\nNAME=test\n"), Epoch: 1700000000,
	}}
}

// TestBuild: the UKI is the stub with the four sections at the expected
// addresses, holding exactly the inputs; the same inputs give the same
// bytes.
func TestBuild(t *testing.T) {
	fx := newUKIFixture(t)
	out := filepath.Join(fx.dir, "uki.efi")
	if err := Build(context.Background(), fx.in, out); err != nil {
		t.Fatal(err)
	}
	f, err := pe.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	kernel, _ := os.ReadFile(fx.kernel)
	initrd, _ := os.ReadFile(fx.initrd)
	initrdVMA := uint32(0x40000+len(kernel)+SectionAlignment-1) / SectionAlignment * SectionAlignment
	want := []struct {
		name string
		vma  uint32
		data []byte
	}{
		{".osrel", 0x20000, fx.in.OSRelease}, {".cmdline", 0x30000, fx.in.Cmdline},
		{".linux", 0x40000, kernel}, {".initrd", initrdVMA, initrd},
	}
	for _, w := range want {
		s := f.Section(w.name)
		if s == nil {
			t.Fatalf("no %s section", w.name)
		}
		data, err := s.Data()
		if err != nil {
			t.Fatal(err)
		}
		if s.VirtualAddress != w.vma || int(s.VirtualSize) != len(w.data) || !bytes.Equal(data[:s.VirtualSize], w.data) {
			t.Errorf("%s at %#x, %d bytes; want %#x, the input's %d bytes", w.name, s.VirtualAddress, s.VirtualSize, w.vma, len(w.data))
		}
	}
	if f.FileHeader.TimeDateStamp != 1700000000 {
		t.Errorf("PE time stamp %d, want the epoch", f.FileHeader.TimeDateStamp)
	}
	a, _ := os.ReadFile(out)
	pe0, _ := peHeader(a)
	if got := binary.LittleEndian.Uint32(a[pe0+optChecksumAt:]); got != checksum(a, pe0+optChecksumAt) {
		t.Errorf("PE checksum %#x is not the image's", got)
	}

	again := filepath.Join(fx.dir, "again.efi")
	if err := Build(context.Background(), fx.in, again); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(again); !bytes.Equal(a, b) {
		t.Error("two builds of the same inputs differ")
	}
	if ents, _ := os.ReadDir(fx.dir); len(ents) != 3 {
		t.Errorf("Build left %d files in the output's directory, want the 2 UKIs and the initrd", len(ents))
	}
}

// TestChecksum: the checksum of Debian's stub is the one it carries.
func TestChecksum(t *testing.T) {
	b, err := os.ReadFile(DefaultStub)
	if err != nil {
		t.Fatal(err)
	}
	pe0, err := peHeader(b)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := checksum(b, pe0+optChecksumAt), binary.LittleEndian.Uint32(b[pe0+optChecksumAt:]); got != want || want == 0 {
		t.Errorf("checksum %#x, the stub says %#x", got, want)
	}
}

func TestLayout(t *testing.T) {
	stub, err := os.ReadFile(DefaultStub)
	if err != nil {
		t.Fatal(err)
	}
	secs := []Section{{Name: ".osrel", Size: 23}, {Name: ".cmdline", Size: 0x10001}, {Name: ".linux", Size: 100}}
	got, err := Layout(stub, secs)
	if err != nil {
		t.Fatal(err)
	}
	// A command line over 64 KiB pushes .linux one step further.
	if got[0].VMA != 0x20000 || got[1].VMA != 0x30000 || got[2].VMA != 0x50000 {
		t.Errorf("layout %+v", got)
	}
	for name, tc := range map[string]struct {
		stub []byte
		secs []Section
	}{
		"not PE":       {stub: []byte("MZ not really"), secs: secs},
		"already UKI":  {stub: stub, secs: []Section{{Name: ".sdmagic", Size: 1}}},
		"empty":        {stub: nil, secs: secs},
		"ELF, not PE":  {stub: mustRead(t, "/usr/lib/systemd/boot/efi/linuxx64.elf.stub"), secs: secs},
		"beyond 2 GiB": {stub: stub, secs: []Section{{Name: ".linux", Size: 1 << 31}}},
	} {
		if _, err := Layout(tc.stub, tc.secs); !errors.Is(err, ErrInput) {
			t.Errorf("%s: %v, want ErrInput", name, err)
		}
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestBuildRefuses(t *testing.T) {
	fx := newUKIFixture(t)
	for name, tc := range map[string]struct {
		mod     func(*Inputs)
		wantErr error
	}{
		"no os-release":   {mod: func(in *Inputs) { in.OSRelease = nil }, wantErr: ErrInput},
		"no kernel":       {mod: func(in *Inputs) { in.Kernel = filepath.Join(fx.dir, "absent") }, wantErr: os.ErrNotExist},
		"empty initrd":    {mod: func(in *Inputs) { in.Initrd = "/dev/null" }, wantErr: ErrInput},
		"stub not an EFI": {mod: func(in *Inputs) { in.Stub = fx.initrd }, wantErr: ErrInput},
	} {
		in := fx.in
		tc.mod(&in)
		out := filepath.Join(t.TempDir(), "uki.efi")
		if err := Build(context.Background(), in, out); !errors.Is(err, tc.wantErr) {
			t.Errorf("%s: %v, want %v", name, err, tc.wantErr)
		}
		if ents, _ := os.ReadDir(filepath.Dir(out)); len(ents) != 0 {
			t.Errorf("%s: a failed build left %v", name, ents)
		}
	}
}

// TestSignVerify: sbverify accepts the signed UKI with the builder's
// certificate and refuses it with another, and refuses the unsigned one.
func TestSignVerify(t *testing.T) {
	fx := newUKIFixture(t)
	ctx := context.Background()
	unsigned, signed := filepath.Join(fx.dir, "uki.unsigned.efi"), filepath.Join(fx.dir, "uki.efi")
	if err := Build(ctx, fx.in, unsigned); err != nil {
		t.Fatal(err)
	}
	key, cert := newTestPair(t, fx.dir, "builder")
	_, other := newTestPair(t, fx.dir, "other")
	if err := Sign(ctx, key, cert, unsigned, signed); err != nil {
		t.Fatal(err)
	}
	if err := Verify(ctx, cert, signed); err != nil {
		t.Errorf("sbverify with the builder's certificate: %v", err)
	}
	err := Verify(ctx, other, signed)
	var te *ToolError
	if !errors.Is(err, ErrTool) || !errors.As(err, &te) || te.Tool != "sbverify" || !strings.Contains(err.Error(), "sbverify") {
		t.Errorf("sbverify with another certificate: %v, want a ToolError of sbverify", err)
	}
	if err := Verify(ctx, cert, unsigned); !errors.Is(err, ErrTool) {
		t.Errorf("sbverify of the unsigned UKI: %v, want ErrTool", err)
	}
	// A failure leaves no output.
	bad := filepath.Join(t.TempDir(), "uki.efi")
	if err := Sign(ctx, key, cert, fx.initrd, bad); !errors.Is(err, ErrTool) || !strings.Contains(err.Error(), "sbsign") {
		t.Errorf("signing a non-PE file: %v, want a ToolError of sbsign", err)
	}
	if ents, _ := os.ReadDir(filepath.Dir(bad)); len(ents) != 0 {
		t.Errorf("a failed signing left %v", ents)
	}
}

func TestReadSigner(t *testing.T) {
	dir := t.TempDir()
	key, cert := newTestPair(t, dir, "builder")
	otherKey, otherCert := newTestPair(t, dir, "other")
	pkcs1 := filepath.Join(dir, "pkcs1.key")
	if out, err := exec.Command("openssl", "rsa", "-traditional", "-in", key, "-out", pkcs1).CombinedOutput(); err != nil {
		t.Fatalf("openssl rsa: %v\n%s", err, out)
	}
	ec := filepath.Join(dir, "ec.key")
	if out, err := exec.Command("openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", ec).CombinedOutput(); err != nil {
		t.Fatalf("openssl genpkey: %v\n%s", err, out)
	}
	for name, tc := range map[string]struct {
		key, cert string
		wantErr   error
		wantMsg   string
	}{
		"PKCS#8":              {key: key, cert: cert},
		"PKCS#1":              {key: pkcs1, cert: cert},
		"other's certificate": {key: key, cert: otherCert, wantErr: ErrInput, wantMsg: "is not the key"},
		"other key":           {key: otherKey, cert: cert, wantErr: ErrInput},
		"EC key":              {key: ec, cert: cert, wantErr: ErrInput, wantMsg: "RSA"},
		"encrypted snakeoil":  {key: SnakeoilKey, cert: SnakeoilCert, wantErr: ErrEncryptedKey, wantMsg: "openssl rsa -passin pass:snakeoil"},
		"cert as key":         {key: cert, cert: cert, wantErr: ErrInput},
		"key as cert":         {key: key, cert: key, wantErr: ErrInput},
		"no key":              {key: filepath.Join(dir, "absent"), cert: cert, wantErr: os.ErrNotExist},
	} {
		got, err := ReadSigner(tc.key, tc.cert)
		if !errors.Is(err, tc.wantErr) || (err != nil && !strings.Contains(err.Error(), tc.wantMsg)) {
			t.Errorf("%s: %v, want %v with %q", name, err, tc.wantErr, tc.wantMsg)
		}
		if err == nil && got == nil {
			t.Errorf("%s: no certificate", name)
		}
	}
	// The snakeoil pair, decrypted as the message says, is accepted.
	plain := filepath.Join(dir, "snakeoil.key")
	if out, err := exec.Command("openssl", "rsa", "-passin", "pass:snakeoil", "-in", SnakeoilKey, "-out", plain).CombinedOutput(); err != nil {
		t.Fatalf("openssl rsa: %v\n%s", err, out)
	}
	if _, err := ReadSigner(plain, SnakeoilCert); err != nil {
		t.Errorf("the decrypted snakeoil pair: %v", err)
	}
}

// TestMakeESP: the ESP is a FAT image holding the UKI byte for byte at
// \EFI\BOOT\BOOTX64.EFI, as mtools' mtype reads it.
func TestMakeESP(t *testing.T) {
	dir := t.TempDir()
	uki := filepath.Join(dir, "uki.efi")
	content := bytes.Repeat([]byte("not really a UKI, but bytes to carry "), 100000)
	if err := os.WriteFile(uki, content, 0o644); err != nil {
		t.Fatal(err)
	}
	esp := filepath.Join(dir, "esp.img")
	if err := MakeESP(context.Background(), uki, esp); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("mtype", "-i", esp, "::/EFI/BOOT/BOOTX64.EFI")
	cmd.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1")
	got, err := cmd.Output()
	if err != nil || !bytes.Equal(got, content) {
		t.Errorf("mtype: %d bytes, %v; want the UKI's %d", len(got), err, len(content))
	}
	if got, err := ReadESPFile(context.Background(), esp, ESPBootPath); err != nil || !bytes.Equal(got, content) {
		t.Errorf("ReadESPFile: %d bytes, %v", len(got), err)
	}
	st, _ := os.Stat(esp)
	if st.Size() != ESPSize(int64(len(content))) || st.Size()%(1<<20) != 0 {
		t.Errorf("ESP of %d bytes, want %d", st.Size(), ESPSize(int64(len(content))))
	}
	if out, err := exec.Command("fsck.vfat", "-n", esp).CombinedOutput(); err != nil {
		t.Errorf("fsck.vfat: %v\n%s", err, out)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 2 {
		t.Errorf("MakeESP left %d files, want the UKI and the ESP", len(ents))
	}
	if err := MakeESP(context.Background(), filepath.Join(dir, "absent"), filepath.Join(dir, "x.img")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("MakeESP of no UKI: %v", err)
	}
}
