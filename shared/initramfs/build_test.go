package initramfs

import (
	"bytes"
	"compress/gzip"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
)

// fixture is a set of build inputs in a temporary directory.
type fixture struct {
	dir  string
	spec Spec
	// module contents after decompression, by canonical name
	modules map[string][]byte
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	dir := t.TempDir()
	write := func(name string, data []byte, perm os.FileMode) string {
		p := filepath.Join(dir, name)
		mustOK(t, os.MkdirAll(filepath.Dir(p), 0o755))
		mustOK(t, os.WriteFile(p, data, perm))
		return p
	}
	// busybox-static is a real static ELF executable.
	agent, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Fatalf("a static ELF is needed (apt-get install busybox-static): %v", err)
	}
	f := &fixture{dir: dir, modules: map[string][]byte{}}
	f.spec.Agent = write("confidant-agent", agent, 0o755)
	f.spec.Config = write("agent.yaml", []byte("verifier:\n  url: https://10.0.2.2:8443\n"), 0o644)
	f.spec.CA = write("ca.pem", testCAPEM(t), 0o644)

	mods := filepath.Join(dir, "lib/modules/6.1.0-test")
	plain := []byte("\x7fELF plain module")
	gzMod := []byte("\x7fELF gzip module")
	zstMod := []byte("\x7fELF zstd module " + strings.Repeat("z", 100))
	xzRaw := []byte("\xfd7zXZ\x00 kept as is")
	var gzBuf bytes.Buffer
	zw := gzip.NewWriter(&gzBuf)
	zw.Write(gzMod)
	mustOK(t, zw.Close())
	enc, err := zstd.NewWriter(nil)
	mustOK(t, err)
	zstData := enc.EncodeAll(zstMod, nil)
	mustOK(t, enc.Close())
	write("lib/modules/6.1.0-test/kernel/a/plain.ko", plain, 0o644)
	write("lib/modules/6.1.0-test/kernel/a/gz-mod.ko.gz", gzBuf.Bytes(), 0o644)
	write("lib/modules/6.1.0-test/kernel/b/zst_mod.ko.zst", zstData, 0o644)
	write("lib/modules/6.1.0-test/kernel/b/xz.ko.xz", xzRaw, 0o644)
	write("lib/modules/6.1.0-test/modules.dep", []byte(
		"kernel/a/plain.ko: kernel/b/zst_mod.ko.zst kernel/a/gz-mod.ko.gz\n"+
			"kernel/a/gz-mod.ko.gz:\n"+
			"kernel/b/zst_mod.ko.zst: kernel/a/gz-mod.ko.gz\n"+
			"kernel/b/xz.ko.xz:\n"), 0o644)
	write("lib/modules/6.1.0-test/modules.builtin", []byte("kernel/fs/ext4/ext4.ko\n"), 0o644)
	f.modules = map[string][]byte{"plain": plain, "gz_mod": gzMod, "zst_mod": zstMod, "xz": xzRaw}
	f.spec.ModulesDir = mods
	f.spec.Modules = []string{"plain", "xz", "ext4"}
	f.spec.Extra = []Extra{{Src: write("busybox", agent, 0o755), Dst: "/bin/busybox"}, {Src: write("hosts", []byte("10.0.2.2 verifier\n"), 0o600), Dst: "/etc/hosts"}}
	f.spec.Mtime = 1700000000
	return f
}

// testCAPEM returns a self-signed CA certificate in PEM.
func testCAPEM(t *testing.T) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	mustOK(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Unix(1700000000, 0), NotAfter: time.Unix(1800000000, 0),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	mustOK(t, err)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func build(t *testing.T, spec Spec) []byte {
	t.Helper()
	var buf bytes.Buffer
	if _, err := Build(spec, &buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestBuildLayout(t *testing.T) {
	f := newFixture(t)
	var buf bytes.Buffer
	res, err := Build(f.spec, &buf)
	if err != nil {
		t.Fatal(err)
	}
	es := byName(readNewc(t, gunzip(t, buf.Bytes())))
	agent, _ := os.ReadFile(f.spec.Agent)
	cfg, _ := os.ReadFile(f.spec.Config)
	ca, _ := os.ReadFile(f.spec.CA)
	want := map[string]struct {
		data []byte
		mode uint32
	}{
		"init":                          {agent, TypeReg | 0o755},
		"etc/confidant/agent.yaml":      {cfg, TypeReg | 0o644},
		"etc/confidant/verifier-ca.pem": {ca, TypeReg | 0o644},
		"bin/busybox":                   {agent, TypeReg | 0o755},
		"etc/hosts":                     {[]byte("10.0.2.2 verifier\n"), TypeReg | 0o600},
		"lib/modules/6.1.0-test/kernel/a/gz-mod.ko":  {f.modules["gz_mod"], TypeReg | 0o644},
		"lib/modules/6.1.0-test/kernel/b/zst_mod.ko": {f.modules["zst_mod"], TypeReg | 0o644},
		"lib/modules/6.1.0-test/kernel/a/plain.ko":   {f.modules["plain"], TypeReg | 0o644},
		"lib/modules/6.1.0-test/kernel/b/xz.ko.xz":   {f.modules["xz"], TypeReg | 0o644},
		"etc/confidant/modules": {[]byte(
			"/lib/modules/6.1.0-test/kernel/a/gz-mod.ko\n" +
				"/lib/modules/6.1.0-test/kernel/b/zst_mod.ko\n" +
				"/lib/modules/6.1.0-test/kernel/a/plain.ko\n" +
				"/lib/modules/6.1.0-test/kernel/b/xz.ko.xz\n"), TypeReg | 0o644},
		"dev/console": {nil, TypeChar | 0o600},
		"tmp":         {nil, TypeDir | 0o1777},
		"proc":        {nil, TypeDir | 0o755},
		"sys":         {nil, TypeDir | 0o755},
	}
	for name, w := range want {
		e, ok := es[name]
		if !ok {
			t.Errorf("missing %s", name)
			continue
		}
		if !bytes.Equal(e.Data, w.data) || e.Mode != w.mode || e.Mtime != 1700000000 {
			t.Errorf("%s: mode %o, %d bytes, mtime %d; want mode %o, %d bytes", name, e.Mode, len(e.Data), e.Mtime, w.mode, len(w.data))
		}
	}
	if len(res.ModulePaths) != 4 || res.Modules.Builtin[0] != "ext4" {
		t.Errorf("result %+v %+v", res.ModulePaths, res.Modules)
	}
	// Nothing else than the entries above and their parent directories.
	for name, e := range es {
		if _, ok := want[name]; !ok && e.Mode&TypeMask != TypeDir {
			t.Errorf("unexpected entry %s", name)
		}
	}
}

// TestBuildReproducible: two builds from the same inputs are identical; one
// changed input byte anywhere changes the output.
func TestBuildReproducible(t *testing.T) {
	f := newFixture(t)
	ref := build(t, f.spec)
	if got := build(t, f.spec); !bytes.Equal(got, ref) {
		t.Fatal("two builds from the same inputs differ")
	}
	flip := func(path string) func() {
		orig, err := os.ReadFile(path)
		mustOK(t, err)
		mod := bytes.Clone(orig)
		mod[len(mod)/2] ^= 1
		mustOK(t, os.WriteFile(path, mod, 0o644))
		return func() { mustOK(t, os.WriteFile(path, orig, 0o644)) }
	}
	for _, p := range []string{
		f.spec.Config,
		f.spec.Agent,
		filepath.Join(f.spec.ModulesDir, "kernel/b/xz.ko.xz"),
		f.spec.Extra[1].Src,
	} {
		restore := flip(p)
		if got := build(t, f.spec); bytes.Equal(got, ref) {
			t.Errorf("changing one byte of %s did not change the output", p)
		}
		restore()
	}
	if got := build(t, f.spec); !bytes.Equal(got, ref) {
		t.Fatal("restored inputs give different output")
	}
	spec := f.spec
	spec.Mtime++
	if got := build(t, spec); bytes.Equal(got, ref) {
		t.Error("a different mtime did not change the output")
	}
}

func TestAssembleErrors(t *testing.T) {
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: []byte{1, 2, 3}})
	tests := map[string]struct {
		edit    func(f *fixture, s *Spec)
		wantErr []error
	}{
		"no agent":  {edit: func(f *fixture, s *Spec) { s.Agent = "" }, wantErr: []error{ErrSpec}},
		"no config": {edit: func(f *fixture, s *Spec) { s.Config = "" }, wantErr: []error{ErrSpec}},
		"dynamic agent": {
			edit:    func(f *fixture, s *Spec) { s.Agent = "/bin/ls" },
			wantErr: []error{ErrNotStatic},
		},
		"script agent": {
			edit:    func(f *fixture, s *Spec) { s.Agent = writeTemp(t, f.dir, "#!/bin/sh\n") },
			wantErr: []error{ErrNotStatic},
		},
		"private key as CA": {
			edit:    func(f *fixture, s *Spec) { s.CA = writeTemp(t, f.dir, string(keyPEM)) },
			wantErr: []error{ErrBadCA},
		},
		"cert plus key as CA": {
			edit:    func(f *fixture, s *Spec) { s.CA = writeTemp(t, f.dir, string(testCAPEM(t))+string(keyPEM)) },
			wantErr: []error{ErrBadCA},
		},
		"empty CA": {
			edit:    func(f *fixture, s *Spec) { s.CA = writeTemp(t, f.dir, "hello\n") },
			wantErr: []error{ErrBadCA},
		},
		"corrupt certificate": {
			edit: func(f *fixture, s *Spec) {
				s.CA = writeTemp(t, f.dir, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("junk")})))
			},
			wantErr: []error{ErrBadCA},
		},
		"unknown module": {
			edit:    func(f *fixture, s *Spec) { s.Modules = append(s.Modules, "nope") },
			wantErr: []error{ErrUnknownModule},
		},
		"modules without dir": {
			edit:    func(f *fixture, s *Spec) { s.ModulesDir = "" },
			wantErr: []error{ErrSpec},
		},
		"extra over /init": {
			edit:    func(f *fixture, s *Spec) { s.Extra = append(s.Extra, Extra{Src: s.Config, Dst: InitPath}) },
			wantErr: []error{ErrExists},
		},
		"extra relative": {
			edit:    func(f *fixture, s *Spec) { s.Extra = append(s.Extra, Extra{Src: s.Config, Dst: "etc/x"}) },
			wantErr: []error{ErrBadPath},
		},
		"extra missing": {
			edit:    func(f *fixture, s *Spec) { s.Extra = append(s.Extra, Extra{Src: f.dir + "/nope", Dst: "/x"}) },
			wantErr: []error{os.ErrNotExist},
		},
		"all at once": {
			edit: func(f *fixture, s *Spec) {
				s.Agent = "/bin/ls"
				s.CA = writeTemp(t, f.dir, string(keyPEM))
				s.Modules = []string{"nope"}
			},
			wantErr: []error{ErrNotStatic, ErrBadCA, ErrUnknownModule},
		},
		"module file missing": {
			edit: func(f *fixture, s *Spec) {
				mustOK(t, os.Remove(filepath.Join(s.ModulesDir, "kernel/a/plain.ko")))
			},
			wantErr: []error{os.ErrNotExist},
		},
		"corrupt zstd module": {
			edit: func(f *fixture, s *Spec) {
				mustOK(t, os.WriteFile(filepath.Join(s.ModulesDir, "kernel/b/zst_mod.ko.zst"), []byte("not zstd"), 0o644))
			},
			wantErr: []error{zstd.ErrMagicMismatch},
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t)
			spec := f.spec
			tt.edit(f, &spec)
			_, err := Assemble(spec)
			if err == nil {
				t.Fatal("no error")
			}
			for _, want := range tt.wantErr {
				if !errors.Is(err, want) {
					t.Errorf("error %v does not match %v", err, want)
				}
			}
		})
	}
}

func writeTemp(t *testing.T, dir, content string) string {
	t.Helper()
	f, err := os.CreateTemp(dir, "input-*")
	mustOK(t, err)
	_, err = f.WriteString(content)
	mustOK(t, err)
	mustOK(t, f.Close())
	return f.Name()
}
