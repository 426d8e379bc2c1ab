//go:build cgo

package server

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	pb "github.com/google/go-tpm-tools/proto/attest"
	tpmpb "github.com/google/go-tpm-tools/proto/tpm"

	"github.com/confidant-cvm/confidant/shared/evidence"
	"github.com/confidant-cvm/confidant/shared/tee/snp"
	"github.com/confidant-cvm/confidant/shared/tee/snp/sim"
	"github.com/confidant-cvm/confidant/shared/tee/tdx"
	"github.com/confidant-cvm/confidant/shared/tpm"
	"github.com/confidant-cvm/confidant/verifier/internal/api"
	"github.com/confidant-cvm/confidant/verifier/internal/appraise"
	"github.com/confidant-cvm/confidant/verifier/internal/challenge"
	"github.com/confidant-cvm/confidant/verifier/internal/seal"
	"github.com/confidant-cvm/confidant/verifier/internal/testguest"
)

// hostileCases is the whole corpus, group by group.
func hostileCases() []hostileCase {
	var all []hostileCase
	for _, g := range [][]hostileCase{
		freshnessCases(), snpCases(), tdxCases(), tpmCases(), httpCases(), releaseCases(), adminCases(), injectionCases(),
	} {
		all = append(all, g...)
	}
	return all
}

// attestCase is a case that posts evidence made with o and is denied with
// reason.
func attestCase(group, name string, o testguest.Options, reason string) hostileCase {
	return hostileCase{group: group, name: name,
		send: func(t *testing.T, c *corpus) response {
			return c.f.attest(c.evidence(t, o), "")
		},
		status: http.StatusForbidden, code: api.CodeDenied, reason: reason, audit: []string{api.CodeDenied}}
}

// envelopeCase posts evidence whose envelope edit changed, denied with
// code and reason.
func envelopeCase(group, name string, o testguest.Options, edit func(*evidence.Envelope), status int, code, reason string, audit ...string) hostileCase {
	return hostileCase{group: group, name: name,
		send: func(t *testing.T, c *corpus) response {
			return c.f.attest(c.envelope(t, o, edit), "")
		},
		status: status, code: code, reason: reason, audit: audit}
}

// fieldCase posts good evidence whose JSON fields edit changes: bytes the
// envelope encoder itself would refuse.
func fieldCase(group, name string, edit func(t *testing.T, m map[string]any), status int, code, reason string, audit ...string) hostileCase {
	return hostileCase{group: group, name: name,
		send: func(t *testing.T, c *corpus) response {
			var m map[string]any
			if err := json.Unmarshal(c.evidence(t, testguest.Options{}), &m); err != nil {
				t.Fatal(err)
			}
			edit(t, m)
			body, err := json.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			return c.f.attest(body, "")
		},
		status: status, code: code, reason: reason, audit: audit}
}

// setBytes returns an edit that replaces the base64url field with what
// value makes of its bytes.
func setBytes(field string, value func(old []byte) []byte) func(t *testing.T, m map[string]any) {
	return func(t *testing.T, m map[string]any) {
		old, _ := m[field].(string)
		b, err := base64.RawURLEncoding.DecodeString(old)
		if err != nil {
			t.Fatal(err)
		}
		m[field] = base64.RawURLEncoding.EncodeToString(value(b))
	}
}

func resign(edit func(r []byte)) func([]byte) ([]byte, error) {
	return func(r []byte) ([]byte, error) {
		edit(r)
		return guest.Signer.Resign(r)
	}
}

func freshnessCases() []hostileCase {
	const g = "freshness+binding"
	otherAK, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	other := sha256.Sum256([]byte("other runtime data"))
	nonceCase := func(name string, nonce func(t *testing.T, c *corpus) []byte, code string) hostileCase {
		return hostileCase{group: g, name: name,
			send: func(t *testing.T, c *corpus) response {
				return c.f.attest(evidenceFor(t, nonce(t, c), testguest.Options{}), "")
			},
			status: http.StatusUnauthorized, code: code, audit: []string{code}}
	}
	random := func(t *testing.T, _ *corpus) []byte {
		n := make([]byte, 64)
		rand.Read(n)
		return n
	}
	flip := func(i int) func(t *testing.T, c *corpus) []byte {
		return func(t *testing.T, c *corpus) []byte {
			n := c.f.nonce()
			n[i] ^= 1
			return n
		}
	}
	return []hostileCase{
		nonceCase("random nonce", random, api.CodeNonceUnknown),
		nonceCase("nonce random part flipped", flip(0), api.CodeNonceUnknown),
		nonceCase("nonce expiry flipped", flip(40), api.CodeNonceUnknown),
		nonceCase("nonce tag flipped", flip(63), api.CodeNonceUnknown),
		nonceCase("all-zero nonce", func(*testing.T, *corpus) []byte { return make([]byte, 64) }, api.CodeNonceUnknown),
		nonceCase("nonce of another verifier", func(t *testing.T, c *corpus) []byte {
			return newFixture(t, fixtureOpts{}).nonce()
		}, api.CodeNonceUnknown),
		nonceCase("genuine MAC, expiry a year away", func(t *testing.T, c *corpus) []byte {
			// Minted with the verifier's own MAC key, read from the store
			// with the KEK: only the TTL bound refuses it.
			return mintNonce(t, c, 365*24*time.Hour)
		}, api.CodeNonceUnknown),
		nonceCase("genuine MAC, expiry one TTL and two minutes away", func(t *testing.T, c *corpus) []byte {
			return mintNonce(t, c, c.f.cfg.NonceTTL+2*time.Minute)
		}, api.CodeNonceUnknown),
		{group: g, name: "expired nonce", send: func(t *testing.T, c *corpus) response {
			n := c.f.nonce()
			c.f.clock.advance(c.f.cfg.NonceTTL)
			defer c.f.clock.advance(-c.f.cfg.NonceTTL)
			return c.f.attest(evidenceFor(t, n, testguest.Options{}), "")
		}, status: http.StatusUnauthorized, code: api.CodeNonceExpired, audit: []string{api.CodeNonceExpired}},
		{group: g, name: "nonce replayed after a denial", send: func(t *testing.T, c *corpus) response {
			n := c.f.nonce()
			c.f.attest(evidenceFor(t, n, testguest.Options{VMPL: 1}), "")
			return c.f.attest(evidenceFor(t, n, testguest.Options{}), "")
		}, status: http.StatusUnauthorized, code: api.CodeNonceReused, audit: []string{api.CodeDenied, api.CodeNonceReused}},
		{group: g, name: "same evidence replayed", send: func(t *testing.T, c *corpus) response {
			body := c.evidence(t, testguest.Options{Measurement: [48]byte{7}})
			c.f.attest(body, "")
			return c.f.attest(body, "")
		}, status: http.StatusUnauthorized, code: api.CodeNonceReused, audit: []string{api.CodeDenied, api.CodeNonceReused}},
		attestCase(g, "REPORT_DATA all zero", testguest.Options{ReportData: func([]byte) [64]byte { return [64]byte{} }}, appraise.ErrBinding.Error()),
		attestCase(g, "REPORT_DATA of other runtime data", testguest.Options{ReportData: func(rd []byte) [64]byte {
			var x [64]byte
			copy(x[:], rd)
			return x
		}}, appraise.ErrBinding.Error()),
		attestCase(g, "quote extraData of other data", testguest.Options{ExtraData: func([]byte) []byte { return other[:] }}, tpm.ErrNonce.Error()),
		attestCase(g, "quote extraData one zero byte", testguest.Options{ExtraData: func([]byte) []byte { return []byte{0} }}, tpm.ErrNonce.Error()),
		attestCase(g, "runtime data names another AK", testguest.Options{AK: &otherAK.PublicKey}, tpm.ErrAKMismatch.Error()),
		attestCase(g, "both bindings broken", testguest.Options{
			ReportData: func([]byte) [64]byte { return [64]byte{1} },
			ExtraData:  func([]byte) []byte { return other[:] },
		}, appraise.ErrBinding.Error()),
		envelopeCase(g, "runtime data not canonical", testguest.Options{}, func(e *evidence.Envelope) {
			e.RuntimeData = append([]byte(" "), e.RuntimeData...)
		}, http.StatusBadRequest, api.CodeMalformed, "", api.CodeMalformed),
		{group: g, name: "runtime data of another attempt", send: func(t *testing.T, c *corpus) response {
			// Both nonces are fresh; the report binds the first.
			other, err := guest.Evidence(c.f.nonce(), testguest.Options{})
			if err != nil {
				t.Fatal(err)
			}
			return c.f.attest(c.envelope(t, testguest.Options{}, func(e *evidence.Envelope) { e.RuntimeData = other.RuntimeData }), "")
		}, status: http.StatusForbidden, code: api.CodeDenied, reason: appraise.ErrBinding.Error(), audit: []string{api.CodeDenied}},
	}
}

// mintNonce makes a nonce with the verifier's own MAC key whose expiry is
// ahead from now.
func mintNonce(t *testing.T, c *corpus, ahead time.Duration) []byte {
	t.Helper()
	sealer, err := seal.LoadOrCreate(c.f.cfg.KEKFile)
	if err != nil {
		t.Fatal(err)
	}
	key, _, err := challenge.LoadKey(t.Context(), c.f.srv.Store, sealer, nil)
	if err != nil {
		t.Fatal(err)
	}
	ttl := c.f.cfg.NonceTTL
	chal, err := challenge.New(challenge.Config{Key: key, Store: c.f.srv.Store, TTL: ttl,
		Now: func() time.Time { return c.f.clock.now().Add(ahead - ttl) }})
	if err != nil {
		t.Fatal(err)
	}
	n, err := chal.Issue()
	if err != nil {
		t.Fatal(err)
	}
	return n.Value
}

// SNP report offsets (AMD SEV-SNP ABI, table 23).
const (
	offVersion      = 0x00
	offGuestSVN     = 0x04
	offPolicy       = 0x08
	offFamilyID     = 0x10
	offImageID      = 0x20
	offVMPL         = 0x30
	offSigAlgo      = 0x34
	offCurrentTCB   = 0x38
	offPlatformInfo = 0x40
	offReportData   = 0x50
	offMeasurement  = 0x90
	offHostData     = 0xC0
	offIDKeyDigest  = 0xE0
	offReportID     = 0x140
	offReportedTCB  = 0x180
	offChipID       = 0x1A0
	offCommittedTCB = 0x1E0
	offLaunchTCB    = 0x1F0
	offSignature    = 0x2A0
)

func snpCases() []hostileCase {
	const g = "snp+sim evidence"
	var cases []hostileCase
	// Any byte of the signed part changed without re-signing.
	for name, off := range map[string]int{
		"guest SVN": offGuestSVN, "policy": offPolicy, "family ID": offFamilyID,
		"image ID": offImageID, "VMPL": offVMPL, "current TCB": offCurrentTCB, "platform info": offPlatformInfo,
		"report data": offReportData, "measurement": offMeasurement, "host data": offHostData,
		"ID key digest": offIDKeyDigest, "report ID": offReportID, "reported TCB": offReportedTCB,
		"chip ID": offChipID, "committed TCB": offCommittedTCB, "launch TCB": offLaunchTCB,
		"signature R": offSignature, "signature S": offSignature + 72,
	} {
		cases = append(cases, attestCase(g, "unsigned edit of "+name, testguest.Options{Report: func(r []byte) ([]byte, error) {
			r[off] ^= 0x10
			return r, nil
		}}, snp.ErrSignature.Error()+"|"+snp.ErrMalformed.Error()))
	}
	cases = append(cases, attestCase(g, "unsigned edit of version", testguest.Options{Report: func(r []byte) ([]byte, error) {
		r[offVersion] ^= 0x10
		return r, nil
	}}, snp.ErrReportVersion.Error()))
	byStranger := func(r []byte) ([]byte, error) {
		s, err := stranger()
		if err != nil {
			return nil, err
		}
		return s.Resign(r)
	}
	cases = append(cases,
		attestCase(g, "version 1 re-signed", testguest.Options{Report: resign(func(r []byte) { binary.LittleEndian.PutUint32(r, 1) })}, snp.ErrReportVersion.Error()),
		attestCase(g, "debug allowed", testguest.Options{Policy: sim.DefaultPolicy | 1<<19}, "debugging"),
		attestCase(g, "migration agent allowed", testguest.Options{Policy: sim.DefaultPolicy | 1<<18}, "migration agent"),
		attestCase(g, "VMPL 1", testguest.Options{VMPL: 1}, "VMPL is 1"),
		attestCase(g, "VMPL 3", testguest.Options{VMPL: 3}, "VMPL is 3"),
		attestCase(g, "unknown measurement", testguest.Options{Measurement: [48]byte{9}}, "measurement 09000000"),
		attestCase(g, "reported TCB above the VCEK's", testguest.Options{Report: resign(func(r []byte) { r[offReportedTCB] = 1 })}, snp.ErrTCBMismatch.Error()),
		attestCase(g, "committed TCB above current", testguest.Options{Report: resign(func(r []byte) { r[offCommittedTCB+7] = 0xff })}, "TCB"),
		attestCase(g, "chip ID of another chip", testguest.Options{Report: resign(func(r []byte) { r[offChipID] ^= 1 })}, "chip|CHIP_ID|hwID"),
		attestCase(g, "unknown signature algorithm", testguest.Options{Report: resign(func(r []byte) { r[offSigAlgo] = 9 })}, snp.ErrSignature.Error()+"|"+snp.ErrMalformed.Error()+"|algorithm"),
		attestCase(g, "signed by another simulated chip", testguest.Options{Report: byStranger}, snp.ErrSignature.Error()),
		envelopeCase(g, "another chain's certificate table", testguest.Options{Report: byStranger}, func(e *evidence.Envelope) {
			if s, err := stranger(); err == nil {
				e.CertTable = s.CertTable()
			}
		}, http.StatusForbidden, api.CodeDenied, snp.ErrChain.Error(), api.CodeDenied),
		attestCase(g, "hardware kind with a simulated report", testguest.Options{Kind: evidence.KindSNP}, snp.ErrChain.Error()),
		attestCase(g, "hardware kind without vTPM", testguest.Options{Kind: evidence.KindSNP, NoTPM: true}, appraise.ErrTPMRequired.Error()),
		fieldCase(g, "truncated report", setBytes("report", func(b []byte) []byte { return b[:0x2A0] }), http.StatusBadRequest, api.CodeMalformed, "1184", api.CodeMalformed),
		fieldCase(g, "report with trailing bytes", setBytes("report", func(b []byte) []byte { return append(b, 0) }), http.StatusBadRequest, api.CodeMalformed, "1184", api.CodeMalformed),
		fieldCase(g, "empty report", setBytes("report", func([]byte) []byte { return nil }), http.StatusBadRequest, api.CodeMalformed, "report", api.CodeMalformed),
		envelopeCase(g, "garbage certificate table", testguest.Options{}, func(e *evidence.Envelope) { e.CertTable = []byte("garbage certificate table") },
			http.StatusForbidden, api.CodeDenied, snp.ErrMalformed.Error()+"|"+snp.ErrChain.Error(), api.CodeDenied),
		envelopeCase(g, "certificate table offset past the end", testguest.Options{}, func(e *evidence.Envelope) {
			tbl := make([]byte, 48)
			copy(tbl, []byte{0x63, 0xda, 0x75, 0x8d, 0xe6, 0x64, 0x45, 0x64, 0xad, 0xc5, 0xf4, 0xb9, 0x3b, 0xe8, 0xac, 0xcd})
			binary.LittleEndian.PutUint32(tbl[16:], 0xfffffff0)
			binary.LittleEndian.PutUint32(tbl[20:], 0x100)
			e.CertTable = tbl
		}, http.StatusForbidden, api.CodeDenied, snp.ErrMalformed.Error()+"|"+snp.ErrChain.Error(), api.CodeDenied),
	)
	return cases
}

func tdxCases() []hostileCase {
	const g = "tdx evidence"
	quote := func(edit func(q []byte) []byte) func(*evidence.Envelope) {
		return func(e *evidence.Envelope) {
			e.TEE, e.Report, e.CertTable = evidence.KindTDX, edit(tdxQuote()), nil
		}
	}
	same := func(q []byte) []byte { return q }
	return []hostileCase{
		envelopeCase(g, "genuine quote for other runtime data", testguest.Options{}, quote(same),
			http.StatusForbidden, api.CodeDenied, appraise.ErrBinding.Error(), api.CodeDenied),
		envelopeCase(g, "genuine quote with one body byte changed", testguest.Options{}, quote(func(q []byte) []byte { q[0x100] ^= 1; return q }),
			http.StatusForbidden, api.CodeDenied, "tdx:", api.CodeDenied),
		envelopeCase(g, "signature changed", testguest.Options{}, quote(func(q []byte) []byte { q[0x2C0] ^= 1; return q }),
			http.StatusForbidden, api.CodeDenied, "tdx:", api.CodeDenied),
		fieldCase(g, "truncated quote", func(t *testing.T, m map[string]any) {
			m["tee"] = string(evidence.KindTDX)
			delete(m, "cert_table")
			setBytes("report", func([]byte) []byte { return tdxQuote()[:600] })(t, m)
		}, http.StatusBadRequest, api.CodeMalformed, "1020", api.CodeMalformed),
		envelopeCase(g, "quote version 3", testguest.Options{}, quote(func(q []byte) []byte { binary.LittleEndian.PutUint16(q, 3); return q }),
			http.StatusForbidden, api.CodeDenied, tdx.ErrMalformed.Error(), api.CodeDenied),
		envelopeCase(g, "garbage quote", testguest.Options{}, quote(func([]byte) []byte { return bytes.Repeat([]byte{0x41}, 5000) }),
			http.StatusForbidden, api.CodeDenied, tdx.ErrMalformed.Error(), api.CodeDenied),
	}
}

// tdxQuote is a genuine Intel-signed TDX v4 quote (testdata/README.md).
func tdxQuote() []byte {
	q, err := os.ReadFile("testdata/tdx_prod_quote_SPR_E4.dat")
	if err != nil {
		panic(err)
	}
	return q
}

func tpmCases() []hostileCase {
	const g = "vtpm evidence"
	edit := func(name string, f func(*pb.Attestation), reason string) hostileCase {
		return attestCase(g, name, testguest.Options{TPM: f}, reason)
	}
	log := testguest.TamperedEventLog()
	return []hostileCase{
		attestCase(g, "no vTPM evidence", testguest.Options{NoTPM: true}, appraise.ErrTPMRequired.Error()),
		// Only the SHA-256 bank is verified and used; the agent's SHA-1
		// quote is ignored, so every quote is changed.
		edit("quote signature changed", func(a *pb.Attestation) {
			for _, q := range a.GetQuotes() {
				q.RawSig[10] ^= 1
			}
		}, tpm.ErrSignature.Error()+"|"+tpm.ErrMalformed.Error()),
		edit("quoted message changed", func(a *pb.Attestation) {
			for _, q := range a.GetQuotes() {
				q.Quote[len(q.Quote)-1] ^= 1
			}
		}, tpm.ErrSignature.Error()+"|"+tpm.ErrMalformed.Error()+"|"+tpm.ErrPCRDigest.Error()),
		edit("SHA-256 quote removed", func(a *pb.Attestation) {
			a.Quotes = slices.DeleteFunc(a.Quotes, func(q *tpmpb.Quote) bool { return q.GetPcrs().GetHash() == tpmpb.HashAlgo_SHA256 })
		}, tpm.ErrMalformed.Error()),
		edit("no quotes", func(a *pb.Attestation) { a.Quotes = nil }, tpm.ErrMalformed.Error()+"|quote"),
		edit("PCR 7 changed", func(a *pb.Attestation) {
			for _, q := range a.GetQuotes() {
				q.GetPcrs().GetPcrs()[7][0] ^= 1
			}
		}, tpm.ErrPCRDigest.Error()+"|PCRs digest not matching"),
		edit("PCR 0 changed", func(a *pb.Attestation) {
			for _, q := range a.GetQuotes() {
				q.GetPcrs().GetPcrs()[0][0] ^= 1
			}
		}, tpm.ErrPCRDigest.Error()+"|PCRs digest not matching"),
		edit("PCR 4 removed", func(a *pb.Attestation) {
			for _, q := range a.GetQuotes() {
				delete(q.GetPcrs().GetPcrs(), 4)
			}
		}, tpm.ErrPCRDigest.Error()+"|"+tpm.ErrMalformed.Error()+"|PCR"),
		edit("AK public area garbage", func(a *pb.Attestation) { a.AkPub = []byte{1, 2, 3} }, tpm.ErrMalformed.Error()+"|"+tpm.ErrAKMismatch.Error()),
		edit("AK public area of another key", func(a *pb.Attestation) { a.AkPub[len(a.AkPub)-1] ^= 1 }, tpm.ErrAKMismatch.Error()+"|"+tpm.ErrMalformed.Error()),
		attestCase(g, "event log tampered", testguest.Options{EventLog: log}, tpm.ErrEventLog.Error()),
		attestCase(g, "event log garbage", testguest.Options{EventLog: []byte("\x00\x01garbage, not a TCG log")}, tpm.ErrEventLog.Error()),
		attestCase(g, "event log cut in half", testguest.Options{EventLog: testguest.EventLog[:len(testguest.EventLog)/2]}, tpm.ErrEventLog.Error()),
		attestCase(g, "event log empty", testguest.Options{EventLog: []byte{}}, tpm.ErrEventLog.Error()),
		envelopeCase(g, "attestation not a protobuf", testguest.Options{}, func(e *evidence.Envelope) { e.TPM = []byte("\xff\xff\xff garbage") },
			http.StatusForbidden, api.CodeDenied, tpm.ErrMalformed.Error(), api.CodeDenied),
	}
}

func httpCases() []hostileCase {
	const g = "http abuse"
	// post sends body; a malformed attempt is audited (it spends the nonce
	// it names, if any), a refusal before the body is read is not.
	post := func(name, path string, body []byte, status int, code string) hostileCase {
		var audit []string
		if code == api.CodeMalformed {
			audit = []string{code}
		}
		return hostileCase{group: g, name: name, send: func(t *testing.T, c *corpus) response {
			return c.f.do(http.MethodPost, path, body)
		}, status: status, code: code, audit: audit}
	}
	method := func(m, path string, status int, code string) hostileCase {
		return hostileCase{group: g, name: m + " " + path, send: func(t *testing.T, c *corpus) response {
			return c.raw(t, m, path, nil, nil)
		}, status: status, code: code}
	}
	withBody := func(name string, edit func(b []byte) []byte) hostileCase {
		return hostileCase{group: g, name: name, send: func(t *testing.T, c *corpus) response {
			return c.f.attest(edit(c.evidence(t, testguest.Options{})), "")
		}, status: http.StatusBadRequest, code: api.CodeMalformed, audit: []string{api.CodeMalformed}}
	}
	b64 := base64.RawURLEncoding.EncodeToString
	// ctype posts a body of another media type: refused before it is read.
	ctype := func(ct, path string) hostileCase {
		return hostileCase{group: g, name: "Content-Type " + ct + " to " + path, send: func(t *testing.T, c *corpus) response {
			return c.raw(t, http.MethodPost, path, map[string]string{"Content-Type": ct, "Authorization": "Bearer " + c.good},
				bytes.NewReader(c.evidence(t, testguest.Options{})))
		}, status: http.StatusUnsupportedMediaType, code: api.CodeMediaType}
	}
	return []hostileCase{
		post("empty body", "/v1/attest", nil, 400, api.CodeMalformed),
		post("not JSON", "/v1/attest", []byte("not json"), 400, api.CodeMalformed),
		post("JSON array", "/v1/attest", []byte("[1,2,3]"), 400, api.CodeMalformed),
		post("JSON null", "/v1/attest", []byte("null"), 400, api.CodeMalformed),
		post("deeply nested JSON", "/v1/attest", []byte(strings.Repeat("[", 100000)), 400, api.CodeMalformed),
		post("version 2", "/v1/attest", []byte(`{"version":2,"tee":"sim-sev-snp","runtime_data":"e30","report":"AA"}`), 400, api.CodeMalformed),
		post("body too large", "/v1/attest", bytes.Repeat([]byte("x"), int(api.DefaultMaxBodyBytes)+1), 413, api.CodeTooLarge),
		withBody("unknown field", func(b []byte) []byte { return bytes.Replace(b, []byte(`{`), []byte(`{"extra":1,`), 1) }),
		withBody("duplicate field", func(b []byte) []byte { return bytes.Replace(b, []byte(`{`), []byte(`{"version":1,`), 1) }),
		withBody("field in other case", func(b []byte) []byte { return bytes.Replace(b, []byte(`"tee"`), []byte(`"TEE"`), 1) }),
		withBody("trailing data", func(b []byte) []byte { return append(b, []byte(`{}`)...) }),
		withBody("unknown TEE kind", func(b []byte) []byte { return bytes.Replace(b, []byte(`"sim-sev-snp"`), []byte(`"sgx"`), 1) }),
		withBody("report not base64url", func(b []byte) []byte { return bytes.Replace(b, []byte(`"report":"`), []byte(`"report":"!!`), 1) }),
		withBody("NUL in a field", func(b []byte) []byte {
			return bytes.Replace(b, []byte(`"sim-sev-snp"`), []byte(`"sim-sev-snp\u0000"`), 1)
		}),
		withBody("runtime data not JSON", func(b []byte) []byte {
			return bytes.Replace(b, []byte(`"runtime_data":"`), []byte(`"runtime_data":"`+b64([]byte("x"))+`A`), 1)
		}),
		{group: g, name: "empty audience", send: func(t *testing.T, c *corpus) response {
			return c.f.attest(c.evidence(t, testguest.Options{}), "?audience=")
		}, status: 400, code: api.CodeMalformed},
		{group: g, name: "nine audiences", send: func(t *testing.T, c *corpus) response {
			return c.f.attest(c.evidence(t, testguest.Options{}), "?audience=a&audience=b&audience=c&audience=d&audience=e&audience=f&audience=g&audience=h&audience=i")
		}, status: 400, code: api.CodeMalformed},
		{group: g, name: "audience with a newline", send: func(t *testing.T, c *corpus) response {
			return c.f.attest(c.evidence(t, testguest.Options{}), "?audience=a%0a2026-01-01%20attest%20affirming")
		}, status: 400, code: api.CodeMalformed},
		{group: g, name: "audience with ESC", send: func(t *testing.T, c *corpus) response {
			return c.f.attest(c.evidence(t, testguest.Options{}), "?audience=%1b%5d0%3bpwned%07")
		}, status: 400, code: api.CodeMalformed},
		{group: g, name: "audience of 300 bytes", send: func(t *testing.T, c *corpus) response {
			return c.f.attest(c.evidence(t, testguest.Options{}), "?audience="+strings.Repeat("a", 300))
		}, status: 400, code: api.CodeMalformed},
		ctype("text/plain", "/v1/attest"),
		ctype("application/x-www-form-urlencoded", "/v1/attest"),
		ctype("multipart/form-data; boundary=x", "/v1/attest"),
		ctype("application/json; charset=latin1", "/v1/attest"),
		ctype("application/jsonp", "/v1/attest"),
		ctype("text/plain", "/v1/challenge"),
		ctype("text/plain", "/v1/keys/sim-key/release"),
		{group: g, name: "chunked body past the limit", send: func(t *testing.T, c *corpus) response {
			big := bytes.Repeat([]byte("x"), int(api.DefaultMaxBodyBytes)+1)
			return c.raw(t, http.MethodPost, "/v1/attest", map[string]string{"Content-Type": "application/json"},
				io.MultiReader(bytes.NewReader(big))) // no length: sent chunked
		}, status: 413, code: api.CodeTooLarge},
		method(http.MethodGet, "/v1/attest", 405, api.CodeMethodNotAllowed),
		method(http.MethodPut, "/v1/attest", 405, api.CodeMethodNotAllowed),
		method(http.MethodDelete, "/v1/challenge", 405, api.CodeMethodNotAllowed),
		method("PATCH", "/v1/keys/sim-key/release", 405, api.CodeMethodNotAllowed),
		method("FOO", "/v1/attest", 405, api.CodeMethodNotAllowed),
		method(http.MethodPost, "/v1/jwks", 405, api.CodeMethodNotAllowed),
		method(http.MethodGet, "/v2/attest", 404, api.CodeNotFound),
		method(http.MethodGet, "/v1/admin/keys", 404, api.CodeNotFound),
		method(http.MethodPost, "/v1/admin/keys", 404, api.CodeNotFound),
		method(http.MethodGet, "/v1/audit", 404, api.CodeNotFound),
		method(http.MethodGet, "/v1/keys/sim-key", 404, api.CodeNotFound),
		method(http.MethodGet, "/v1/attest/../admin/keys", 404, api.CodeNotFound),
	}
}
