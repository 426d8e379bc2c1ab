package uefi

import (
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/confidant-cvm/confidant/shared/testenv"
)

// Tools and files the interop tests use; scripts/install-deps.sh installs
// them (sbsigntool, osslsigncode, systemd-boot-efi, ovmf, binutils).
const (
	stubPath       = "/usr/lib/systemd/boot/efi/linuxx64.efi.stub"
	snakeoilVars   = "/usr/share/OVMF/OVMF_VARS_4M.snakeoil.fd"
	blankVars      = "/usr/share/OVMF/OVMF_VARS_4M.fd"
	snakeoilCert   = "/usr/share/ovmf/PkKek-1-snakeoil.pem"
	snakeoilKeyEnc = "/usr/share/ovmf/PkKek-1-snakeoil.key" // test-only key, passphrase "snakeoil"
)

// need skips the test when a tool or file is missing, or fails it when
// CONFIDANT_TEST_REQUIRE_ROOT=1 (CI has them all, so a skip would hide a
// test that never ran).
func need(t *testing.T, what ...string) {
	t.Helper()
	for _, w := range what {
		var err error
		if strings.HasPrefix(w, "/") {
			_, err = os.Stat(w)
		} else {
			_, err = exec.LookPath(w)
		}
		if err == nil {
			continue
		}
		if os.Getenv(testenv.RequireRootEnv) == "1" {
			t.Fatalf("%s is missing (%v) and %s=1 requires this test to run; run scripts/install-deps.sh", w, err, testenv.RequireRootEnv)
		}
		t.Skipf("%s is missing (%v); run scripts/install-deps.sh", w, err)
	}
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// throwawayKey makes a self-signed RSA key and certificate in dir.
func throwawayKey(t *testing.T, dir, cn string) (key, cert string) {
	t.Helper()
	need(t, "openssl")
	key, cert = filepath.Join(dir, cn+".key"), filepath.Join(dir, cn+".pem")
	run(t, "openssl", "req", "-new", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
		"-out", cert, "-days", "2", "-subj", "/CN="+cn)
	return key, cert
}

// snakeoilKey decrypts Debian's test-only snakeoil key into dir.
func snakeoilKey(t *testing.T, dir string) (key, cert string) {
	t.Helper()
	need(t, "openssl", snakeoilKeyEnc, snakeoilCert)
	key = filepath.Join(dir, "snakeoil.key")
	run(t, "openssl", "rsa", "-passin", "pass:snakeoil", "-in", snakeoilKeyEnc, "-out", key)
	return key, snakeoilCert
}

// sbsign signs in with sbsign and returns the signed file's path.
func sbsign(t *testing.T, key, cert, in string) string {
	t.Helper()
	need(t, "sbsign")
	out := in + ".signed"
	run(t, "sbsign", "--key", key, "--cert", cert, "--output", out, in)
	return out
}

var osslDigestRE = regexp.MustCompile(`Calculated message digest\s*:\s*([0-9A-Fa-f]{64})`)

// osslsigncodeDigest returns the SHA-256 Authenticode digest that
// osslsigncode calculates for a signed file.
func osslsigncodeDigest(t *testing.T, file string) string {
	t.Helper()
	need(t, "osslsigncode")
	// verify exits non-zero for a self-signed signer; the digest line is
	// printed anyway.
	out, _ := exec.Command("osslsigncode", "verify", "-in", file).CombinedOutput()
	m := osslDigestRE.FindSubmatch(out)
	if m == nil {
		t.Fatalf("osslsigncode verify %s printed no calculated digest:\n%s", file, out)
	}
	return strings.ToLower(string(m[1]))
}

// buildUKI adds the given sections (name → file) to the systemd stub with
// objcopy, the way confidant-image and ukify do, and returns its path.
func buildUKI(t *testing.T, dir string, sections [][2]string) string {
	t.Helper()
	need(t, "objcopy", stubPath)
	out := filepath.Join(dir, "uki.efi")
	args := []string{}
	vma := 0x20000
	for _, s := range sections {
		st, err := os.Stat(s[1])
		if err != nil {
			t.Fatal(err)
		}
		args = append(args, "--add-section", s[0]+"="+s[1], "--change-section-vma", s[0]+"="+fmt.Sprintf("%#x", vma))
		vma += (int(st.Size()) + 0xffff) &^ 0xffff
	}
	run(t, "objcopy", append(args, stubPath, out)...)
	return out
}

// testPE builds a minimal PE32+ image: headers (512 bytes), then the given
// sections' raw data, each padded to 512, then trailer.
func testPE(sections [][]byte, trailer []byte) []byte {
	const optSize = 240
	hdr := make([]byte, 512)
	hdr[0], hdr[1] = 'M', 'Z'
	le := binary.LittleEndian
	le.PutUint32(hdr[0x3c:], 0x40)
	copy(hdr[0x40:], "PE\x00\x00")
	coff := 0x44
	le.PutUint16(hdr[coff:], 0x8664)
	le.PutUint16(hdr[coff+2:], uint16(len(sections)))
	le.PutUint16(hdr[coff+16:], optSize)
	opt := coff + 20
	le.PutUint16(hdr[opt:], peMagic32Plus)
	le.PutUint32(hdr[opt+60:], 512)
	le.PutUint32(hdr[opt+108:], 16)
	var body []byte
	for i, s := range sections {
		sec := opt + optSize + i*40
		copy(hdr[sec:], ".s"+string(rune('a'+i)))
		le.PutUint32(hdr[sec+8:], uint32(len(s)))
		raw := (len(s) + 511) &^ 511
		le.PutUint32(hdr[sec+16:], uint32(raw))
		le.PutUint32(hdr[sec+20:], uint32(len(hdr)+len(body)))
		body = append(body, s...)
		body = append(body, make([]byte, raw-len(s))...)
	}
	img := append(hdr, body...)
	return append(img, trailer...)
}
