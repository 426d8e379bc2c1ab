package uefi

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// smallUKI builds a UKI from the systemd stub with a small fake kernel,
// os-release and command line, and returns its path.
func smallUKI(t *testing.T, dir string) string {
	t.Helper()
	return buildUKI(t, dir, [][2]string{
		{".osrel", writeFile(t, dir, "osrel", []byte("ID=test\n"))},
		{".cmdline", writeFile(t, dir, "cmdline", []byte("console=ttyS0"))},
		{".linux", writeFile(t, dir, "linux", bytes.Repeat([]byte("kernel"), 1000))},
	})
}

// snakeoilUKI signs a small UKI with Debian's test-only snakeoil key (the
// recorded boot's UKI was signed with it too) and returns the image.
func snakeoilUKI(t *testing.T) []byte {
	t.Helper()
	need(t, stubPath, "sbsign")
	dir := t.TempDir()
	key, cert := snakeoilKey(t, dir)
	return mustRead(t, sbsign(t, key, cert, smallUKI(t, dir)))
}

func snakeoilStore(t *testing.T) *VarStore {
	t.Helper()
	need(t, snakeoilVars)
	s, err := ParseVarStore(mustRead(t, snakeoilVars))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// eventsEqual compares PCR, type, digest and data.
func eventsEqual(a, b []Event) bool {
	return slices.EqualFunc(a, b, func(x, y Event) bool {
		return x.PCR == y.PCR && x.Type == y.Type && bytes.Equal(x.Digest, y.Digest) && bytes.Equal(x.Data, y.Data)
	})
}

// TestPredictPCR7MatchesRecordedBoot: the snakeoil store and a UKI signed
// with the snakeoil key predict PCR 7 exactly as OVMF measured it, event
// data included.
func TestPredictPCR7MatchesRecordedBoot(t *testing.T) {
	predicted, err := PredictOS(snakeoilUKI(t), snakeoilStore(t))
	if err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(Replay(predicted)[7]); got != recordedPCRs[7] {
		t.Errorf("predicted PCR 7 %s, quoted %s", got, recordedPCRs[7])
	}
	actual := recordedEvents(t)
	if d := FirstDifference(predicted, actual, 7); d != "" {
		t.Error(d)
	}
	if !eventsEqual(eventsOf(predicted, 7), eventsOf(actual, 7)) {
		t.Error("predicted PCR 7 events differ from the log's in type, digest or data")
	}
}

// TestPredictPCR4MatchesRecordedBoot: the action and separator match the
// log byte for byte; with the log's UKI digest in place of the stub's, the
// prediction replays to the quoted PCR 4.
func TestPredictPCR4MatchesRecordedBoot(t *testing.T) {
	uki := snakeoilUKI(t)
	predicted, err := PredictOS(uki, snakeoilStore(t))
	if err != nil {
		t.Fatal(err)
	}
	p, a := eventsOf(predicted, 4), eventsOf(recordedEvents(t), 4)
	if len(p) != 3 || len(a) != 3 {
		t.Fatalf("PCR 4: %d predicted events, %d in the log; want 3", len(p), len(a))
	}
	if !eventsEqual(p[:2], a[:2]) {
		t.Errorf("action and separator differ from the log:\n%+v\n%+v", p[:2], a[:2])
	}
	if d := FirstDifference(predicted, recordedEvents(t), 4); !strings.HasPrefix(d, "PCR 4 event 2 (EV_EFI_BOOT_SERVICES_APPLICATION): predicted ") {
		t.Errorf("the small UKI is not the recorded one, yet FirstDifference says %q", d)
	}
	digest, err := AuthenticodeDigest(uki, crypto.SHA256)
	if err != nil || !bytes.Equal(p[2].Digest, digest) {
		t.Fatalf("boot application digest %x, Authenticode %x (%v)", p[2].Digest, digest, err)
	}
	p[2].Digest = a[2].Digest
	if got := hex.EncodeToString(Replay(p)[4]); got != recordedPCRs[4] {
		t.Errorf("predicted PCR 4 with the recorded UKI's digest %s, quoted %s", got, recordedPCRs[4])
	}
}

// TestPredictPCR11 builds a UKI with objcopy and checks the stub events
// against digests computed here from the input files, and that
// FirstDifference names the section that changed.
func TestPredictPCR11(t *testing.T) {
	dir := t.TempDir()
	files := map[string][]byte{
		".osrel":   []byte("ID=confidant-test\n"),
		".cmdline": []byte("console=ttyS0 root=LABEL=root"),
		".linux":   bytes.Repeat([]byte{0x4d, 0x5a, 1, 2, 3}, 30011), // not a multiple of 512
		".initrd":  bytes.Repeat([]byte("070701"), 5000),
		".pcrsig":  []byte(`{"sha256":[]}`), // present, never measured
	}
	order := []string{".osrel", ".cmdline", ".pcrsig", ".linux", ".initrd"} // not the stub's order
	build := func(sub string, files map[string][]byte) []byte {
		d := filepath.Join(dir, sub)
		var secs [][2]string
		for _, name := range order {
			secs = append(secs, [2]string{name, writeFileMkdir(t, d, strings.TrimPrefix(name, "."), files[name])})
		}
		return mustRead(t, buildUKI(t, d, secs))
	}
	off := snakeoilStore(t)
	if err := off.SetSecureBootEnable(false); err != nil {
		t.Fatal(err)
	}
	predicted, err := PredictOS(build("a", files), off)
	if err != nil {
		t.Fatal(err)
	}
	var want []Event
	for _, name := range []string{".linux", ".osrel", ".cmdline", ".initrd"} {
		label := encodeName(name, true)
		nameSum, fileSum := sha256.Sum256(append([]byte(name), 0)), sha256.Sum256(files[name])
		want = append(want,
			Event{PCR: 11, Type: EvIPL, Digest: nameSum[:], Data: label},
			Event{PCR: 11, Type: EvIPL, Digest: fileSum[:], Data: label})
	}
	if !eventsEqual(eventsOf(predicted, 11), want) {
		t.Errorf("PCR 11 events differ from the digests of the input files:\n%+v", eventsOf(predicted, 11))
	}
	// The name events and their data are the ones the stub logged in the
	// recorded boot.
	rec := eventsOf(recordedEvents(t), 11)
	for i := 0; i < len(rec); i += 2 {
		if !eventsEqual(rec[i:i+1], want[i:i+1]) || !bytes.Equal(rec[i+1].Data, want[i+1].Data) {
			t.Errorf("recorded PCR 11 event %d (%s) differs from the predicted shape", i, rec[i].Desc)
		}
	}
	changed := map[string][]byte{}
	for k, v := range files {
		changed[k] = v
	}
	changed[".cmdline"] = []byte("console=ttyS0 root=LABEL=root init=/bin/sh")
	other, err := PredictOS(build("b", changed), off)
	if err != nil {
		t.Fatal(err)
	}
	d := FirstDifference(predicted, other, 11)
	if !strings.HasPrefix(d, "PCR 11 event 5 (EV_IPL .cmdline): predicted ") {
		t.Errorf("FirstDifference = %q, want PCR 11 event 5 (.cmdline)", d)
	}
}

func writeFileMkdir(t *testing.T, dir, name string, b []byte) string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return writeFile(t, dir, name, b)
}

func TestPredictSecureBootOff(t *testing.T) {
	vars := snakeoilStore(t)
	if err := vars.SetSecureBootEnable(false); err != nil {
		t.Fatal(err)
	}
	need(t, stubPath)
	unsigned := mustRead(t, smallUKI(t, t.TempDir()))
	for name, uki := range map[string][]byte{"unsigned": unsigned, "signed": snakeoilUKI(t)} {
		t.Run(name, func(t *testing.T) {
			predicted, err := PredictOS(uki, vars)
			if err != nil {
				t.Fatal(err)
			}
			p7 := eventsOf(predicted, 7)
			if len(p7) != 6 || p7[5].Type != EvSeparator {
				t.Fatalf("PCR 7: %d events, want 5 variables and a separator, no authority", len(p7))
			}
			if sb := p7[0].Data; sb[len(sb)-1] != 0 || len(sb) != 16+8+8+20+1 {
				t.Errorf("SecureBoot event data %x, want the variable with data 00", sb)
			}
			d := FirstDifference(predicted, recordedEvents(t), 7)
			if !strings.HasPrefix(d, "PCR 7 event 0 (EV_EFI_VARIABLE_DRIVER_CONFIG SecureBoot): predicted ") {
				t.Errorf("FirstDifference = %q, want the SecureBoot event named", d)
			}
		})
	}
}

func TestPredictRefusesUnauthorized(t *testing.T) {
	need(t, stubPath, "sbsign")
	dir := t.TempDir()
	key, cert := throwawayKey(t, dir, "stranger")
	unsignedPath := smallUKI(t, dir)
	stranger := mustRead(t, sbsign(t, key, cert, unsignedPath))
	signed := snakeoilUKI(t)
	digest, err := AuthenticodeDigest(signed, crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	revoking := snakeoilStore(t)
	dbx, _ := revoking.Get(VarDBX, ImageSecurityDatabaseGUID)
	dbx.Data = append(dbx.Data, EncodeSignatureLists([]SignatureList{{Type: CertSHA256GUID, Entries: []SignatureData{{Data: digest}}}})...)
	if err := revoking.Set(dbx); err != nil {
		t.Fatal(err)
	}
	tests := map[string]struct {
		uki  []byte
		vars *VarStore
	}{
		"unsigned":                {mustRead(t, unsignedPath), snakeoilStore(t)},
		"signed by a stranger":    {stranger, snakeoilStore(t)},
		"revoked by dbx (digest)": {signed, revoking},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if _, err := PredictOS(tc.uki, tc.vars); !errors.Is(err, ErrNotAuthorized) {
				t.Errorf("error %v, want ErrNotAuthorized", err)
			}
		})
	}
	if _, err := PredictOS(signed, nil); err == nil {
		t.Error("no variable store: no error")
	}
}

// TestPredictAuthorityByIssuer signs with a leaf whose CA is the second db
// entry: the authority event names the CA's entry, not the first one.
func TestPredictAuthorityByIssuer(t *testing.T) {
	need(t, stubPath, "sbsign", blankVars, snakeoilCert)
	dir := t.TempDir()
	caKey, ca := newCert(t, "test CA", nil, nil)
	leafKey, leaf := newCert(t, "test signer", ca, caKey)
	keyPath := writeFile(t, dir, "leaf.key", pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(leafKey)}))
	certPath := writeFile(t, dir, "leaf.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaf.Raw}))
	uki := mustRead(t, sbsign(t, keyPath, certPath, smallUKI(t, dir)))
	vars, err := ParseVarStore(mustRead(t, blankVars))
	if err != nil {
		t.Fatal(err)
	}
	other := mustCert(t, snakeoilCert)
	owner := mustGUID("01234567-89ab-cdef-0123-456789abcdef")
	if err := EnrollSecureBoot(vars, owner, []*x509.Certificate{other}, []*x509.Certificate{other}, []*x509.Certificate{other, ca}); err != nil {
		t.Fatal(err)
	}
	predicted, err := PredictOS(uki, vars)
	if err != nil {
		t.Fatal(err)
	}
	p7 := eventsOf(predicted, 7)
	last := p7[len(p7)-1]
	want := variableData(VarDB, ImageSecurityDatabaseGUID, append(owner[:], ca.Raw...))
	if last.Type != EvEFIVariableAuthority || !bytes.Equal(last.Data, want) {
		t.Errorf("authority event %s with %d bytes of data, want the CA's db entry", last.Desc, len(last.Data))
	}
}

func newCert(t *testing.T, cn string, parent *x509.Certificate, parentKey *rsa.PrivateKey) (*rsa.PrivateKey, *x509.Certificate) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		BasicConstraintsValid: true, IsCA: parent == nil,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return key, c
}
