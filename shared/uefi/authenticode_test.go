package uefi

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

var osslCurrentRE = regexp.MustCompile(`Current message digest\s*:\s*([0-9A-Fa-f]{64})`)

// TestAuthenticodeDigestAgainstTools signs the systemd stub and a UKI
// built from it with sbsign and a throwaway key, and checks our digest
// against the one osslsigncode calculates and the one sbsign signed
// (sbverify accepting the signature proves sbsign's digest is the one in
// the file). The same code gave 4c5bb954… for the recorded boot's UKI,
// the digest OVMF measured into PCR 4 (testdata/README.md).
func TestAuthenticodeDigestAgainstTools(t *testing.T) {
	need(t, stubPath, "sbsign", "sbverify", "osslsigncode", "objcopy")
	dir := t.TempDir()
	key, cert := throwawayKey(t, dir, "throwaway")
	osrel := writeFile(t, dir, "osrel", []byte("ID=test\n"))
	cmdline := writeFile(t, dir, "cmdline", []byte("console=ttyS0"))
	linux := writeFile(t, dir, "linux", bytes.Repeat([]byte("kernel"), 20001))
	uki := buildUKI(t, dir, [][2]string{{".osrel", osrel}, {".cmdline", cmdline}, {".linux", linux}})
	stub := filepath.Join(dir, "stub.efi")
	if err := os.WriteFile(stub, mustRead(t, stubPath), 0o644); err != nil {
		t.Fatal(err)
	}
	for name, unsigned := range map[string]string{"stub": stub, "uki": uki} {
		t.Run(name, func(t *testing.T) {
			signed := sbsign(t, key, cert, unsigned)
			run(t, "sbverify", "--cert", cert, signed)
			pe := mustRead(t, signed)
			got, err := AuthenticodeDigest(pe, crypto.SHA256)
			if err != nil {
				t.Fatal(err)
			}
			if want := osslsigncodeDigest(t, signed); hex.EncodeToString(got) != want {
				t.Errorf("digest %x, osslsigncode calculates %s", got, want)
			}
			out, _ := runLoose(signed)
			m := osslCurrentRE.FindStringSubmatch(out)
			if m == nil || strings.ToLower(m[1]) != hex.EncodeToString(got) {
				t.Errorf("digest %x, sbsign signed %v", got, m)
			}
			certs, err := SignerCertificates(pe)
			if err != nil {
				t.Fatal(err)
			}
			want := mustCert(t, cert)
			if len(certs) != 1 || !certs[0].Equal(want) {
				t.Errorf("signer certificates %d, want the throwaway certificate", len(certs))
			}
			if certs, err := SignerCertificates(mustRead(t, unsigned)); err != nil || len(certs) != 0 {
				t.Errorf("unsigned image: %d certificates, %v; want none and no error", len(certs), err)
			}
		})
	}
}

// TestAuthenticodeDigestIgnoresSignature checks the three exclusions: the
// checksum, the certificate table's directory entry and the table itself.
func TestAuthenticodeDigestIgnoresSignature(t *testing.T) {
	plain := testPE([][]byte{[]byte("code"), []byte("data")}, []byte("trailing"))
	want, err := AuthenticodeDigest(plain, crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	signed := append(bytes.Clone(plain), make([]byte, 16)...)
	binary.LittleEndian.PutUint32(signed[len(plain):], 16)
	binary.LittleEndian.PutUint32(signed[0x58+64:], 0x1234) // CheckSum
	binary.LittleEndian.PutUint32(signed[0x58+112+32:], uint32(len(plain)))
	binary.LittleEndian.PutUint32(signed[0x58+112+36:], 16)
	got, err := AuthenticodeDigest(signed, crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("signed digest %x, unsigned %x", got, want)
	}
	// Hand-computed: headers without CheckSum and the directory entry,
	// then the two sections, then the trailer.
	h := sha256.New()
	h.Write(plain[:0x58+64])
	h.Write(plain[0x58+68 : 0x58+112+32])
	h.Write(plain[0x58+112+40 : 1536])
	h.Write(plain[1536:])
	if hand := h.Sum(nil); !bytes.Equal(hand, want) {
		t.Errorf("digest %x, computed by hand %x", want, hand)
	}
	plain[600] ^= 1
	if flipped, _ := AuthenticodeDigest(plain, crypto.SHA256); bytes.Equal(flipped, want) {
		t.Error("a flipped section byte left the digest unchanged")
	}
}

func TestAuthenticodeDigestRefusesHostilePE(t *testing.T) {
	good := testPE([][]byte{[]byte("code"), []byte("data")}, nil)
	le := binary.LittleEndian
	sec := 0x58 + 240
	tests := map[string]func([]byte) []byte{
		"empty":              func([]byte) []byte { return nil },
		"truncated headers":  func(b []byte) []byte { return b[:300] },
		"truncated sections": func(b []byte) []byte { return b[:len(b)-10] },
		"no MZ":              func(b []byte) []byte { b[0] = 'X'; return b },
		"e_lfanew past end":  func(b []byte) []byte { le.PutUint32(b[0x3c:], 1<<31); return b },
		"bad magic":          func(b []byte) []byte { le.PutUint16(b[0x58:], 0x999); return b },
		"overlapping sections": func(b []byte) []byte {
			le.PutUint32(b[sec+40+20:], le.Uint32(b[sec+20:])+16)
			return b
		},
		"section in headers": func(b []byte) []byte { le.PutUint32(b[sec+20:], 100); return b },
		"section past end":   func(b []byte) []byte { le.PutUint32(b[sec+40+16:], 1<<30); return b },
		"section size wraps": func(b []byte) []byte { le.PutUint32(b[sec+40+16:], 0xffffffff); return b },
		"cert table past end": func(b []byte) []byte {
			le.PutUint32(b[0x58+112+32:], uint32(len(b)))
			le.PutUint32(b[0x58+112+36:], 64)
			return b
		},
		"cert table inside a section": func(b []byte) []byte {
			le.PutUint32(b[0x58+112+32:], 600)
			le.PutUint32(b[0x58+112+36:], uint32(len(b)-600))
			return b
		},
		"too many directories": func(b []byte) []byte { le.PutUint32(b[0x58+108:], 1000); return b },
		"SizeOfHeaders huge":   func(b []byte) []byte { le.PutUint32(b[0x58+60:], 1<<30); return b },
	}
	for name, mutate := range tests {
		t.Run(name, func(t *testing.T) {
			pe := mutate(bytes.Clone(good))
			if d, err := AuthenticodeDigest(pe, crypto.SHA256); !errors.Is(err, ErrMalformed) {
				t.Errorf("AuthenticodeDigest = %x, %v; want ErrMalformed", d, err)
			}
			if _, err := SignerCertificates(pe); !errors.Is(err, ErrMalformed) {
				t.Errorf("SignerCertificates error %v; want ErrMalformed", err)
			}
		})
	}
}

func TestSignerCertificatesRefusesBadTable(t *testing.T) {
	plain := testPE([][]byte{[]byte("code")}, nil)
	tests := map[string][]byte{
		"short":         {1, 2, 3, 4, 5, 6, 7, 8},
		"wrong type":    winCert(0x200, 1, []byte{0x30, 0}),
		"wrong rev":     winCert(0x100, 2, []byte{0x30, 0}),
		"not DER":       winCert(0x200, 2, []byte("not a signature")),
		"length beyond": append(binary.LittleEndian.AppendUint32(nil, 999), 0, 2, 2, 0, 0, 0, 0, 0),
	}
	for name, table := range tests {
		t.Run(name, func(t *testing.T) {
			pe := append(bytes.Clone(plain), table...)
			binary.LittleEndian.PutUint32(pe[0x58+112+32:], uint32(len(plain)))
			binary.LittleEndian.PutUint32(pe[0x58+112+36:], uint32(len(table)))
			if _, err := SignerCertificates(pe); !errors.Is(err, ErrMalformed) {
				t.Errorf("error %v, want ErrMalformed", err)
			}
		})
	}
}

func winCert(rev, typ uint16, body []byte) []byte {
	b := binary.LittleEndian.AppendUint32(nil, uint32(8+len(body)))
	b = binary.LittleEndian.AppendUint16(b, rev)
	b = binary.LittleEndian.AppendUint16(b, typ)
	b = append(b, body...)
	for len(b)%8 != 0 {
		b = append(b, 0)
	}
	return b
}

func FuzzAuthenticodeDigest(f *testing.F) {
	f.Add(testPE([][]byte{[]byte("code"), []byte("data")}, []byte("tail")))
	signed := testPE([][]byte{[]byte("code")}, nil)
	n := len(signed)
	signed = append(signed, winCert(0x200, 2, []byte{0x30, 0x03, 0x06, 0x01, 0x00})...)
	binary.LittleEndian.PutUint32(signed[0x58+112+32:], uint32(n))
	binary.LittleEndian.PutUint32(signed[0x58+112+36:], uint32(len(signed)-n))
	f.Add(signed)
	f.Fuzz(func(t *testing.T, pe []byte) {
		d1, err1 := AuthenticodeDigest(pe, crypto.SHA256)
		d2, err2 := AuthenticodeDigest(pe, crypto.SHA256)
		if (err1 == nil) != (err2 == nil) || !bytes.Equal(d1, d2) {
			t.Fatalf("not deterministic: %x %v / %x %v", d1, err1, d2, err2)
		}
		if err1 != nil && !errors.Is(err1, ErrMalformed) {
			t.Fatalf("error %v does not wrap ErrMalformed", err1)
		}
		_, _ = SignerCertificates(pe)
	})
}
