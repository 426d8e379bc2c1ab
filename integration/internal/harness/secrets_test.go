package harness

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/confidant-cvm/confidant/shared/secretscan"
)

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// TestScanSecrets lays out a lab's directory as the harness leaves it
// (hostd state with the simulated chain's key and a vTPM key, a world with
// its verifier's KEK, log, audit export and the image's disk key copy, a
// guest console), plants secrets in the logs, and expects each found —
// and nothing in the clean files.
func TestScanSecrets(t *testing.T) {
	dir := t.TempDir()
	l := &Lab{Dir: dir, Hostd: &Hostd{StateDir: filepath.Join(dir, "hostd", "state")}}
	ark, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	arkDER, err := x509.MarshalPKCS8PrivateKey(ark)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(l.Hostd.StateDir, "sim", "ark.key"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: arkDER}))
	tpmKey := randomBytes(t, 32)
	writeFile(t, filepath.Join(l.Hostd.StateDir, "keys", "g1.swtpm-key"), []byte(hex.EncodeToString(tpmKey)))
	kek, diskKey := randomBytes(t, 32), randomBytes(t, 32)
	v, err := NewVerifier(VerifierConfig{Dir: filepath.Join(dir, "w1", "v")})
	if err != nil {
		t.Fatal(err)
	}
	w := &World{Lab: l, Name: "w1", Dir: filepath.Join(dir, "w1"), Verifier: v,
		Image: &Image{KeyFile: filepath.Join(dir, "w1", "os-disk.key")}}
	l.worlds = append(l.worlds, w)
	writeFile(t, filepath.Join(v.StateDir(), "signing.kek"), []byte(base64.StdEncoding.EncodeToString(kek)))
	writeFile(t, w.Image.KeyFile, diskKey)

	clean := "level=INFO msg=\"key released\" key=os-disk version=1\n"
	writeFile(t, filepath.Join(dir, "hostd", "hostd.log"), []byte(clean))
	writeFile(t, v.LogPath(), []byte(clean))
	writeFile(t, filepath.Join(l.Hostd.StateDir, "guests", "g1", "console.log"), []byte("confidant: attested\n"))
	writeFile(t, filepath.Join(v.Config.Dir, "audit-export-1.jsonl"), []byte(`{"id":1,"event":"release"}`+"\n"))
	res, err := l.ScanSecrets(nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Findings) != 0 {
		t.Fatalf("findings in clean logs: %v", res.Findings)
	}
	for _, want := range []string{"hostd/hostd.log", "w1/v/verifier.log", "w1/v/audit-export-1.jsonl", "hostd/state/guests/g1/console.log"} {
		if !slices.Contains(res.Scanned, want) {
			t.Errorf("%s not scanned (scanned %v)", want, res.Scanned)
		}
	}

	tok := "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ2bS0xIn0." + base64.RawURLEncoding.EncodeToString(randomBytes(t, 64))
	plants := map[string]struct {
		file, text, secret string
	}{
		"KEK in the verifier log":        {v.LogPath(), "kek=" + hex.EncodeToString(kek), "w1 verifier KEK (decoded)"},
		"disk key in a console":          {filepath.Join(l.Hostd.StateDir, "guests", "g1", "console.log"), base64.StdEncoding.EncodeToString(diskKey), "w1 disk key"},
		"vTPM key in hostd's log":        {filepath.Join(dir, "hostd", "hostd.log"), base64.RawURLEncoding.EncodeToString(tpmKey), "hostd keys/g1.swtpm-key (decoded)"},
		"simulated ARK in hostd's log":   {filepath.Join(dir, "hostd", "hostd.log"), base64.StdEncoding.EncodeToString(arkDER), "hostd sim/ark.key"},
		"whole token in an audit export": {filepath.Join(v.Config.Dir, "audit-export-1.jsonl"), `{"reasons":["` + tok + `"]}`, "whole token"},
		"an added secret":                {v.LogPath(), "passphrase correct-horse-battery", "recovery passphrase"},
	}
	for name, p := range plants {
		t.Run(name, func(t *testing.T) {
			old, err := os.ReadFile(p.file)
			if err != nil {
				t.Fatal(err)
			}
			writeFile(t, p.file, append(append([]byte{}, old...), p.text+"\n"...))
			defer writeFile(t, p.file, old)
			res, err := l.ScanSecrets(func(s *secretscan.Scanner) error {
				return s.Add("recovery passphrase", []byte("correct-horse-battery"))
			})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.ContainsFunc(res.Findings, func(f secretscan.Finding) bool {
				return f.Secret == p.secret && strings.HasSuffix(f.Source, strings.TrimPrefix(p.file, dir))
			}) {
				t.Fatalf("planted %s not found: %v (secrets %v)", p.secret, res.Findings, res.Secrets)
			}
		})
	}
}
