package loadgen

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"os"
	"sync"
	"testing"

	pb "github.com/google/go-tpm-tools/proto/attest"
	"github.com/google/go-tpm/tpm2"
	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwe"
	"google.golang.org/protobuf/proto"

	"github.com/confidant-cvm/confidant/shared/evidence"
	"github.com/confidant-cvm/confidant/shared/tee/snp"
	"github.com/confidant-cvm/confidant/shared/tee/snp/sim"
	"github.com/confidant-cvm/confidant/shared/tpm"
)

// testSigner is one simulated signer for the package's tests (RSA key
// generation makes it slow to create).
var testSigner = sync.OnceValues(func() (*sim.Signer, error) {
	dir, err := os.MkdirTemp("", "loadgen-signer-")
	if err != nil {
		return nil, err
	}
	s, err := sim.Create(dir)
	os.RemoveAll(dir)
	return s, err
})

func signer(t testing.TB) *sim.Signer {
	t.Helper()
	s, err := testSigner()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func image(t testing.TB) *Image {
	t.Helper()
	img, err := NewImage(EventLog)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func newAgent(t testing.TB, id int) *Agent {
	t.Helper()
	a, err := NewAgent(id, evidence.KindSimSNP, signer(t), image(t))
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func nonce(t testing.TB) []byte {
	t.Helper()
	n := make([]byte, 64)
	if _, err := rand.Read(n); err != nil {
		t.Fatal(err)
	}
	return n
}

// decoded is an agent's evidence taken apart as the verifier does.
type decoded struct {
	env *evidence.Envelope
	rd  *evidence.RuntimeData
	ak  any
	att *pb.Attestation
}

func decode(t testing.TB, body []byte) decoded {
	t.Helper()
	env, err := evidence.Decode(body)
	if err != nil {
		t.Fatal(err)
	}
	rd, err := evidence.ParseRuntimeData(env.RuntimeData)
	if err != nil {
		t.Fatal(err)
	}
	ak, err := rd.AKPublic()
	if err != nil {
		t.Fatal(err)
	}
	var att pb.Attestation
	if err := proto.Unmarshal(env.TPM, &att); err != nil {
		t.Fatal(err)
	}
	return decoded{env: env, rd: rd, ak: ak, att: &att}
}

var allBanks = []string{"sha1", "sha256", "sha384"}

// TestEvidenceVerifies checks the generator's evidence with the verifier's
// own checks: the SNP report against the simulated root and the runtime
// data, the vTPM attestation with shared/tpm.Verify on every bank, strict
// event-log replay included.
func TestEvidenceVerifies(t *testing.T) {
	a := newAgent(t, 7)
	n := nonce(t)
	body, err := a.Evidence(n)
	if err != nil {
		t.Fatal(err)
	}
	d := decode(t, body)
	if d.env.TEE != evidence.KindSimSNP || !bytes.Equal(d.rd.Nonce, n) {
		t.Fatalf("kind %s, nonce %x", d.env.TEE, d.rd.Nonce)
	}
	rdHash := evidence.ReportData(d.env.RuntimeData)
	c, err := snp.Verify(d.env.Report, d.env.CertTable, snp.Options{
		SimRoot: signer(t).RootCert(), ReportData: rdHash[:], AllowSMT: true,
	})
	if err != nil {
		t.Fatalf("SNP report: %v", err)
	}
	m := Measurement()
	if !c.Simulated || c.Measurement != hex.EncodeToString(m[:]) || c.HostData != hex.EncodeToString(a.hostData[:]) {
		t.Errorf("SNP claims: simulated %v, measurement %s, host data %s", c.Simulated, c.Measurement, c.HostData)
	}

	extra := evidence.TPMNonce(d.env.RuntimeData)
	tc, err := tpm.Verify(d.env.TPM, d.ak, extra[:], tpm.Options{Banks: allBanks})
	if err != nil {
		t.Fatalf("vTPM evidence: %v", err)
	}
	if !tc.SecureBoot.Known || !tc.SecureBoot.Enabled || tc.Events.Count == 0 {
		t.Errorf("secure boot %+v, events %+v", tc.SecureBoot, tc.Events)
	}
	img := image(t)
	for _, b := range img.Banks {
		for i, v := range b.PCRs {
			if got := tc.PCRs[b.Name][i]; got != hex.EncodeToString(v) {
				t.Errorf("%s PCR %d = %s, want %x", b.Name, i, got, v)
			}
		}
	}
	// The quotes say what a TPM says: the magic, the quote type, the AK's
	// qualified name, all 24 PCRs.
	for _, q := range d.att.Quotes {
		ad, err := tpm2.Unmarshal[tpm2.TPMSAttest](q.Quote)
		if err != nil {
			t.Fatal(err)
		}
		info, err := ad.Attested.Quote()
		if err != nil {
			t.Fatal(err)
		}
		if ad.Magic != tpm2.TPMGeneratedValue || !bytes.Equal(ad.QualifiedSigner.Buffer, a.tpm.qn) ||
			len(info.PCRSelect.PCRSelections) != 1 || !bytes.Equal(info.PCRSelect.PCRSelections[0].PCRSelect, []byte{0xff, 0xff, 0xff}) {
			t.Errorf("quote %+v", ad)
		}
	}

	// Each request is fresh: another nonce, another report and quote.
	body2, err := a.Evidence(nonce(t))
	if err != nil {
		t.Fatal(err)
	}
	d2 := decode(t, body2)
	if bytes.Equal(d2.env.Report, d.env.Report) || bytes.Equal(d2.att.Quotes[0].RawSig, d.att.Quotes[0].RawSig) {
		t.Error("second evidence repeats the first")
	}
	if !bytes.Equal(d2.att.AkPub, d.att.AkPub) {
		t.Error("the AK changed between requests")
	}
	// Another agent is another guest.
	other, err := newAgent(t, 8).Evidence(n)
	if err != nil {
		t.Fatal(err)
	}
	do := decode(t, other)
	if bytes.Equal(do.att.AkPub, d.att.AkPub) || bytes.Equal(do.rd.RuntimeKey, d.rd.RuntimeKey) || bytes.Equal(do.env.Report[0xC0:0xE0], d.env.Report[0xC0:0xE0]) {
		t.Error("two agents share an AK, a runtime key or HOST_DATA")
	}
}

// TestEvidenceTampered shows the verifier's checks run over the generated
// evidence (and so would catch a generator bug): each change is refused
// with its sentinel.
func TestEvidenceTampered(t *testing.T) {
	a := newAgent(t, 1)
	body, err := a.Evidence(nonce(t))
	if err != nil {
		t.Fatal(err)
	}
	otherAK, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tests := map[string]struct {
		edit    func(att *pb.Attestation, extra []byte) ([]byte, any) // returns extraData and AK to verify with
		wantErr error
	}{
		"quote byte flipped": {
			edit: func(att *pb.Attestation, extra []byte) ([]byte, any) {
				att.Quotes[1].Quote[len(att.Quotes[1].Quote)-1] ^= 1
				return extra, nil
			},
			wantErr: tpm.ErrSignature,
		},
		"other extraData": {
			edit:    func(att *pb.Attestation, extra []byte) ([]byte, any) { return bytes.Repeat([]byte{1}, 32), nil },
			wantErr: tpm.ErrNonce,
		},
		"PCR value changed": {
			edit: func(att *pb.Attestation, extra []byte) ([]byte, any) {
				for _, q := range att.Quotes {
					v := bytes.Clone(q.Pcrs.Pcrs[7])
					v[0] ^= 1
					q.Pcrs.Pcrs[7] = v
				}
				return extra, nil
			},
			wantErr: tpm.ErrPCRDigest,
		},
		"event log truncated": {
			edit: func(att *pb.Attestation, extra []byte) ([]byte, any) {
				att.EventLog = att.EventLog[:len(att.EventLog)/2]
				return extra, nil
			},
			wantErr: tpm.ErrEventLog,
		},
		"AK not restricted": {
			edit: func(att *pb.Attestation, extra []byte) ([]byte, any) {
				pub, err := akPublic(&a.tpm.ak.PublicKey)
				if err != nil {
					t.Fatal(err)
				}
				pub.ObjectAttributes.Restricted = false
				att.AkPub = tpm2.Marshal(&pub)
				return extra, nil
			},
			wantErr: tpm.ErrAKMismatch,
		},
		"another AK": {
			edit:    func(att *pb.Attestation, extra []byte) ([]byte, any) { return extra, &otherAK.PublicKey },
			wantErr: tpm.ErrAKMismatch,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			d := decode(t, body)
			extra := evidence.TPMNonce(d.env.RuntimeData)
			extraData, ak := tc.edit(d.att, extra[:])
			if ak == nil {
				ak = d.ak
			}
			raw, err := proto.Marshal(d.att)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tpm.Verify(raw, ak, extraData, tpm.Options{Banks: allBanks}); !errors.Is(err, tc.wantErr) {
				t.Errorf("Verify: %v, want %v", err, tc.wantErr)
			}
		})
	}
}

func TestRuntimeDataSplice(t *testing.T) {
	a := newAgent(t, 2)
	for _, size := range []int{evidence.MinNonceSize, 48, evidence.MaxNonceSize} {
		n := bytes.Repeat([]byte{byte(size)}, size)
		got, err := a.runtimeData(n)
		if err != nil {
			t.Fatal(err)
		}
		rd, err := evidence.NewRuntimeData(n, a.tpm.public(), &a.rk.PublicKey, nil)
		if err != nil {
			t.Fatal(err)
		}
		want, err := rd.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("nonce of %d bytes: spliced\n%s\nwant\n%s", size, got, want)
		}
	}
	for _, size := range []int{0, evidence.MinNonceSize - 1, evidence.MaxNonceSize + 1} {
		if _, err := a.Evidence(make([]byte, size)); err == nil {
			t.Errorf("nonce of %d bytes accepted", size)
		}
	}
}

func TestImageReplay(t *testing.T) {
	img := image(t)
	if len(img.Banks) != 3 || img.Bank("sha256") == nil || img.Bank("sha512") != nil {
		t.Fatalf("banks %v", img.Banks)
	}
	b := img.Bank("sha256")
	for i := range numPCRs {
		want := (i <= 9 || i == 14)
		if b.Logged[i] != want {
			t.Errorf("PCR %d logged = %v, want %v", i, b.Logged[i], want)
		}
	}
	if v := b.PCRs[17]; v[0] != 0xff || v[31] != 0xff {
		t.Errorf("PCR 17 = %x, want its reset value (all ones)", v)
	}
	if len(b.HexPCRs()) != 11 {
		t.Errorf("HexPCRs %v", b.HexPCRs())
	}
	for name, log := range map[string][]byte{
		"empty":     nil,
		"garbage":   []byte("not an event log"),
		"truncated": EventLog[:100],
	} {
		if _, err := NewImage(log); err == nil {
			t.Errorf("%s log: no error", name)
		}
	}
}

func TestUnwrap(t *testing.T) {
	a := newAgent(t, 3)
	secret := []byte("0123456789abcdef0123456789abcdef")
	other, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tests := map[string]struct {
		jwe     func() ([]byte, error)
		wantErr error
	}{
		"RSA-OAEP-256 to the runtime key": {
			jwe: func() ([]byte, error) {
				return jwe.Encrypt(secret, jwe.WithKey(jwa.RSA_OAEP_256(), &a.rk.PublicKey), jwe.WithContentEncryption(jwa.A256GCM()))
			},
		},
		"to another key": {
			jwe: func() ([]byte, error) {
				return jwe.Encrypt(secret, jwe.WithKey(jwa.RSA_OAEP_256(), &other.PublicKey), jwe.WithContentEncryption(jwa.A256GCM()))
			},
			wantErr: ErrUnwrap,
		},
		"RSA-OAEP (SHA-1) instead": {
			jwe: func() ([]byte, error) {
				return jwe.Encrypt(secret, jwe.WithKey(jwa.RSA_OAEP(), &a.rk.PublicKey), jwe.WithContentEncryption(jwa.A256GCM()))
			},
			wantErr: ErrUnwrap,
		},
		"not a JWE": {
			jwe:     func() ([]byte, error) { return []byte("a.b.c.d.e"), nil },
			wantErr: ErrUnwrap,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			msg, err := tc.jwe()
			if err != nil {
				t.Fatal(err)
			}
			got, err := a.Unwrap(msg)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Unwrap: %v, want %v", err, tc.wantErr)
			}
			if err == nil && !bytes.Equal(got, secret) {
				t.Errorf("unwrapped %q", got)
			}
		})
	}
}

func BenchmarkEvidence(b *testing.B) {
	a := newAgent(b, 1)
	n := nonce(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := a.Evidence(n); err != nil {
			b.Fatal(err)
		}
	}
}

// syntheticLog builds a crypto-agile (TCG2) event log with only a SHA-256
// bank: a StartupLocality event for locality, then an S-CRTM version event
// in PCR 0.
func syntheticLog(locality byte) []byte {
	le := binary.LittleEndian
	var spec []byte
	spec = append(spec, "Spec ID Event03\x00"...)
	spec = le.AppendUint32(spec, 0) // platform class
	spec = append(spec, 0, 2, 0, 2) // spec version 2.0, errata 0, uintn size 2
	spec = le.AppendUint32(spec, 1) // one algorithm
	spec = le.AppendUint16(spec, 0x000b)
	spec = le.AppendUint16(spec, 32)
	spec = append(spec, 0) // vendor info size
	var log []byte
	log = le.AppendUint32(log, 0)
	log = le.AppendUint32(log, 3) // EV_NO_ACTION
	log = append(log, make([]byte, 20)...)
	log = le.AppendUint32(log, uint32(len(spec)))
	log = append(log, spec...)
	event := func(typ uint32, digest, data []byte) {
		log = le.AppendUint32(log, 0) // PCR 0
		log = le.AppendUint32(log, typ)
		log = le.AppendUint32(log, 1)
		log = le.AppendUint16(log, 0x000b)
		log = append(log, digest...)
		log = le.AppendUint32(log, uint32(len(data)))
		log = append(log, data...)
	}
	event(3, make([]byte, 32), append([]byte("StartupLocality\x00"), locality))
	version := []byte{'1', 0, '.', 0, '0', 0, 0, 0}
	d := sha256.Sum256(version)
	event(8, d[:], version) // EV_S_CRTM_VERSION
	return log
}

// TestImageStartupLocality checks that PCR 0 starts at the startup
// locality, as the verifier's replay (go-eventlog) has it.
func TestImageStartupLocality(t *testing.T) {
	img, err := NewImage(syntheticLog(3))
	if err != nil {
		t.Fatal(err)
	}
	b := img.Bank("sha256")
	if b == nil || len(img.Banks) != 1 {
		t.Fatalf("banks %+v", img.Banks)
	}
	start := make([]byte, 32)
	start[31] = 3
	version := []byte{'1', 0, '.', 0, '0', 0, 0, 0}
	d := sha256.Sum256(version)
	want := sha256.Sum256(append(start, d[:]...))
	if !bytes.Equal(b.PCRs[0], want[:]) {
		t.Errorf("PCR 0 = %x, want %x", b.PCRs[0], want)
	}
	a, err := NewAgent(1, evidence.KindSimSNP, signer(t), img)
	if err != nil {
		t.Fatal(err)
	}
	body, err := a.Evidence(nonce(t))
	if err != nil {
		t.Fatal(err)
	}
	dec := decode(t, body)
	extra := evidence.TPMNonce(dec.env.RuntimeData)
	if _, err := tpm.Verify(dec.env.TPM, dec.ak, extra[:], tpm.Options{}); err != nil {
		t.Errorf("verifying evidence over the synthetic log: %v", err)
	}
}
