package secretscan

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func newKey(t *testing.T) []byte {
	t.Helper()
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k
}

const logPrefix = `time=2026-12-07T18:00:00Z level=INFO msg="key released" key=os-disk version=1 sub=vm-1 detail=`

// TestFindsPlantedKey plants a released key in a log line in every form
// the scanner knows, alone and inside longer encoded runs at every
// alignment, and expects each to be found.
func TestFindsPlantedKey(t *testing.T) {
	key := newKey(t)
	s := New()
	if err := s.Add("released key os-disk", key); err != nil {
		t.Fatal(err)
	}
	forms := map[string]string{
		"raw":        string(key),
		"hex":        hex.EncodeToString(key),
		"HEX":        strings.ToUpper(hex.EncodeToString(key)),
		"base64":     base64.StdEncoding.EncodeToString(key),
		"raw base64": base64.RawStdEncoding.EncodeToString(key),
		"base64url":  base64.RawURLEncoding.EncodeToString(key),
		"padded url": base64.URLEncoding.EncodeToString(key),
	}
	for k := range 3 {
		prefix, suffix := bytes.Repeat([]byte{0xfa}, k+1), []byte("tail bytes")
		run := append(append(append([]byte{}, prefix...), key...), suffix...)
		forms["inside base64 run, offset "+string(rune('0'+k))] = base64.StdEncoding.EncodeToString(run)
		forms["inside base64url run, offset "+string(rune('0'+k))] = base64.RawURLEncoding.EncodeToString(run)
		forms["inside hex run, offset "+string(rune('0'+k))] = hex.EncodeToString(run)
	}
	for name, planted := range forms {
		t.Run(name, func(t *testing.T) {
			log := []byte(logPrefix + planted + "\n")
			got := s.Scan("verifier log", log)
			if len(got) == 0 {
				t.Fatalf("planted key (%s) not found", name)
			}
			for _, f := range got {
				if f.Secret != "released key os-disk" || f.Source != "verifier log" {
					t.Errorf("finding %v", f)
				}
				if strings.Contains(f.String(), planted) {
					t.Errorf("finding %q repeats the secret", f)
				}
			}
		})
	}
}

// TestFindsWholeToken plants a whole JWT (ES256-shaped) and expects it to
// be found; a token's header and payload alone, without the signature,
// are not a token anyone could present.
func TestFindsWholeToken(t *testing.T) {
	enc := base64.RawURLEncoding.EncodeToString
	hdr := enc([]byte(`{"alg":"ES256","kid":"k1","typ":"JWT"}`))
	payload := enc([]byte(`{"iss":"https://verifier","sub":"vm-1","exp":1790000000}`))
	sig := enc(newKey(t)) + enc(newKey(t))
	s := New()
	if got := s.Scan("console", []byte("token: "+hdr+"."+payload+"."+sig+"\n")); len(got) != 1 || got[0].Form != "JWT" {
		t.Fatalf("whole token: findings %v, want one JWT", got)
	}
	if got := s.Scan("console", []byte("claims of "+hdr+"."+payload+" (unverified)\n")); len(got) != 0 {
		t.Fatalf("header and payload without signature: findings %v", got)
	}
}

func TestFindsPEMPrivateKey(t *testing.T) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	log := append([]byte("loaded signer\n"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})...)
	if got := New().Scan("hostd log", log); len(got) != 1 || got[0].Form != "PEM private key" {
		t.Fatalf("findings %v, want one PEM private key", got)
	}
	cert := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if got := New().Scan("hostd log", cert); len(got) != 0 {
		t.Fatalf("a certificate is not a secret: %v", got)
	}
}

// TestCleanLog: registered secrets absent, nothing found — the scanner
// does not cry wolf on ordinary log lines (digests, ids, base64 data).
func TestCleanLog(t *testing.T) {
	s := New()
	if err := s.Add("kek", newKey(t)); err != nil {
		t.Fatal(err)
	}
	other := newKey(t)
	log := logPrefix + hex.EncodeToString(other) + " " + base64.StdEncoding.EncodeToString(other) +
		` policy_sha256=9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08 jti=3q2-7w` + "\n"
	if got := s.Scan("verifier log", []byte(log)); len(got) != 0 {
		t.Fatalf("findings in a clean log: %v", got)
	}
}

func TestShortSecretRefused(t *testing.T) {
	if err := New().Add("pin", []byte("1234")); err == nil {
		t.Fatal("a 4-byte secret was registered")
	}
}

// TestAddFile registers a key file holding base64url text and finds the
// key's raw bytes and its hex form, which the file does not contain.
func TestAddFile(t *testing.T) {
	key := newKey(t)
	p := filepath.Join(t.TempDir(), "os-disk.key")
	if err := os.WriteFile(p, []byte(base64.RawURLEncoding.EncodeToString(key)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := New()
	if err := s.AddFile("disk key", p); err != nil {
		t.Fatal(err)
	}
	for _, planted := range []string{string(key), hex.EncodeToString(key), base64.RawURLEncoding.EncodeToString(key)} {
		if got := s.Scan("console", []byte("x "+planted+" y")); len(got) == 0 {
			t.Errorf("key from the file not found in form %q", planted)
		}
	}
	if names := s.Names(); len(names) != 2 || names[0] != "disk key" || names[1] != "disk key (decoded)" {
		t.Errorf("names %v", names)
	}
	lp := filepath.Join(t.TempDir(), "verifier.log")
	if err := os.WriteFile(lp, []byte("released "+hex.EncodeToString(key)), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := s.ScanFile(lp); err != nil || len(got) == 0 || got[0].Source != lp {
		t.Fatalf("ScanFile = %v, %v", got, err)
	}
}
