package loadgen

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwe"

	"github.com/confidant-cvm/confidant/shared/evidence"
	"github.com/confidant-cvm/confidant/shared/tee/snp/sim"
)

// Measurement is the launch measurement every simulated agent reports:
// SHA-384 of "confidant-loadgen image". Init writes it into the reference
// values.
func Measurement() [48]byte {
	return sha512.Sum384([]byte("confidant-loadgen image"))
}

// MeasurementName is the reference entry's name (the token's swname).
const MeasurementName = "confidant-loadgen"

// runtimeKeyBits is the size of the agents' runtime keys, as the agent's
// vTPM-resident key.
const runtimeKeyBits = 2048

// Agent is one simulated guest: its own vTPM (a software AK over the shared
// Image), its own runtime key, and its own identity in HOST_DATA, sharing
// the simulated secure processor that signs its reports. An Agent is not
// safe for concurrent use; each worker owns one.
type Agent struct {
	id       int
	kind     evidence.Kind
	signer   *sim.Signer
	tpm      *softTPM
	rk       *rsa.PrivateKey
	hostData [32]byte
	// rdPrefix and rdSuffix surround the base64url nonce in the canonical
	// runtime data, which is otherwise the same for every request.
	rdPrefix, rdSuffix []byte
	// certTable is the signer's certificate table, base64url: the same
	// in every envelope.
	certTable []byte
}

// NewAgent makes agent number id: a fresh AK and RSA-2048 runtime key, and
// HOST_DATA = SHA-256("confidant-loadgen agent <id>") so that each agent is
// a distinct guest (token sub). kind is the envelope's TEE kind; the report
// is always signed by signer.
func NewAgent(id int, kind evidence.Kind, signer *sim.Signer, img *Image) (*Agent, error) {
	if signer == nil || img == nil {
		return nil, errors.New("creating agent: no signer or image")
	}
	t, err := newSoftTPM(img)
	if err != nil {
		return nil, fmt.Errorf("creating agent %d: %w", id, err)
	}
	rk, err := rsa.GenerateKey(rand.Reader, runtimeKeyBits)
	if err != nil {
		return nil, fmt.Errorf("creating agent %d: generating runtime key: %w", id, err)
	}
	a := &Agent{
		id: id, kind: kind, signer: signer, tpm: t, rk: rk,
		hostData: sha256.Sum256([]byte("confidant-loadgen agent " + strconv.Itoa(id))),
	}
	if err := a.precomputeRuntimeData(); err != nil {
		return nil, fmt.Errorf("creating agent %d: %w", id, err)
	}
	a.certTable = base64.RawURLEncoding.AppendEncode(nil, signer.CertTable())
	if err := a.checkEncoding(); err != nil {
		return nil, fmt.Errorf("creating agent %d: %w", id, err)
	}
	return a, nil
}

// precomputeRuntimeData encodes the runtime data once with evidence's own
// canonical encoder and splits it around the nonce, so that a request only
// splices its nonce in. The split is checked against the encoder.
func (a *Agent) precomputeRuntimeData() error {
	probe := bytes.Repeat([]byte{0x5a}, evidence.MaxNonceSize)
	rd, err := evidence.NewRuntimeData(probe, a.tpm.public(), &a.rk.PublicKey, nil)
	if err != nil {
		return err
	}
	enc, err := rd.Marshal()
	if err != nil {
		return err
	}
	marker := []byte(`"nonce":"` + base64.RawURLEncoding.EncodeToString(probe) + `"`)
	i := bytes.Index(enc, marker)
	if i < 0 || bytes.LastIndex(enc, marker) != i {
		return errors.New("splitting runtime data: nonce not found once")
	}
	a.rdPrefix = bytes.Clone(enc[:i+len(`"nonce":"`)])
	a.rdSuffix = bytes.Clone(enc[i+len(marker)-1:])
	// Check the splice against the encoder with a nonce of another size.
	check := bytes.Repeat([]byte{0xa5}, evidence.MinNonceSize)
	got, err := a.runtimeData(check)
	if err != nil {
		return err
	}
	rd.Nonce = check
	want, err := rd.Marshal()
	if err != nil {
		return err
	}
	if !bytes.Equal(got, want) {
		return errors.New("splitting runtime data: splice differs from the canonical encoding")
	}
	return nil
}

// runtimeData returns the canonical runtime data for nonce.
func (a *Agent) runtimeData(nonce []byte) ([]byte, error) {
	if n := len(nonce); n < evidence.MinNonceSize || n > evidence.MaxNonceSize {
		return nil, fmt.Errorf("building runtime data: nonce is %d bytes, want %d to %d", n, evidence.MinNonceSize, evidence.MaxNonceSize)
	}
	out := make([]byte, 0, len(a.rdPrefix)+base64.RawURLEncoding.EncodedLen(len(nonce))+len(a.rdSuffix))
	out = append(out, a.rdPrefix...)
	out = base64.RawURLEncoding.AppendEncode(out, nonce)
	return append(out, a.rdSuffix...), nil
}

// Evidence returns the request body of POST /v1/attest for nonce: runtime
// data naming the agent's AK and runtime key, an SNP report over
// SHA-512(runtime data) signed by the simulated secure processor with its
// certificate table, and a vTPM attestation quoting every bank with
// extraData = SHA-256(runtime data) plus the event log.
func (a *Agent) Evidence(nonce []byte) ([]byte, error) {
	rd, err := a.runtimeData(nonce)
	if err != nil {
		return nil, err
	}
	report, _, err := a.signer.Sign(sim.Request{
		ReportData:  evidence.ReportData(rd),
		Measurement: Measurement(),
		HostData:    a.hostData,
	})
	if err != nil {
		return nil, err
	}
	extra := evidence.TPMNonce(rd)
	att, err := a.tpm.attest(extra[:])
	if err != nil {
		return nil, err
	}
	return a.encode(rd, report, att), nil
}

// encode writes the envelope exactly as evidence.Envelope.Encode does
// (checked by checkEncoding), without encoding/json's second pass over
// the 60 kB of base64 it would otherwise make on every request.
func (a *Agent) encode(rd, report, att []byte) []byte {
	b64 := base64.RawURLEncoding
	n := 128 + len(a.kind) + len(a.certTable) + b64.EncodedLen(len(rd)) + b64.EncodedLen(len(report)) + b64.EncodedLen(len(att))
	out := make([]byte, 0, n)
	out = append(out, `{"version":`...)
	out = strconv.AppendInt(out, evidence.Version, 10)
	out = append(out, `,"tee":"`...)
	out = append(out, a.kind...)
	out = append(out, `","runtime_data":"`...)
	out = b64.AppendEncode(out, rd)
	out = append(out, `","report":"`...)
	out = b64.AppendEncode(out, report)
	out = append(out, `","cert_table":"`...)
	out = append(out, a.certTable...)
	out = append(out, `","tpm":"`...)
	out = b64.AppendEncode(out, att)
	return append(out, `"}`...)
}

// checkEncoding compares encode with evidence's encoder once.
func (a *Agent) checkEncoding() error {
	rd, err := a.runtimeData(make([]byte, evidence.MinNonceSize))
	if err != nil {
		return err
	}
	report := make([]byte, evidence.SNPReportSize)
	att := []byte{1, 2, 3, 4}
	env := &evidence.Envelope{
		Version: evidence.Version, TEE: a.kind, RuntimeData: rd,
		Report: report, CertTable: a.signer.CertTable(), TPM: att,
	}
	want, err := env.Encode()
	if err != nil {
		return err
	}
	if !bytes.Equal(a.encode(rd, report, att), want) {
		return errors.New("encoding evidence: differs from evidence.Envelope.Encode")
	}
	return nil
}

// Unwrap decrypts a released key: a compact JWE (RSA-OAEP-256, A256GCM)
// encrypted to the agent's runtime key.
func (a *Agent) Unwrap(compact []byte) ([]byte, error) {
	key, err := jwe.Decrypt(compact, jwe.WithKey(jwa.RSA_OAEP_256(), a.rk))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnwrap, err)
	}
	if len(key) == 0 {
		return nil, fmt.Errorf("%w: the released key is empty", ErrUnwrap)
	}
	return key, nil
}
