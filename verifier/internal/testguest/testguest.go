//go:build cgo

// Package testguest is a guest for the verifier's tests: the simulated AMD
// secure processor (shared/tee/snp/sim) signs its SNP reports and the
// go-tpm-tools TPM simulator holds its AK and runtime key and quotes its
// PCRs, replaying a recorded UEFI boot (Secure Boot on). It produces
// evidence envelopes exactly as the agent does, with options to break any
// single part of them.
//
// The TPM simulator needs cgo, and one simulator exists per process at a
// time: a Guest is not safe for concurrent use, and a test binary should
// make one.
package testguest

import (
	"bytes"
	"crypto"
	"crypto/sha512"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	pb "github.com/google/go-tpm-tools/proto/attest"
	"github.com/google/go-tpm-tools/simulator"
	"google.golang.org/protobuf/proto"

	"github.com/confidant-cvm/confidant/shared/evidence"
	"github.com/confidant-cvm/confidant/shared/tee/snp/sim"
	"github.com/confidant-cvm/confidant/shared/tpm"
	"github.com/confidant-cvm/confidant/shared/tpm/tpmtest"
)

// EventLog is a recorded RHEL 8 UEFI boot with Secure Boot on
// (tpmtest.RHEL8UEFI).
var EventLog = tpmtest.RHEL8UEFI()

// Measurement is the launch measurement the guest reports by default:
// SHA-384 of "confidant test image".
func Measurement() [48]byte {
	return sha512.Sum384([]byte("confidant test image"))
}

// Guest makes evidence.
type Guest struct {
	// Signer is the simulated AMD secure processor.
	Signer *sim.Signer
	sim    io.ReadWriteCloser
	ak     *tpm.Attester
	rk     *tpm.DecryptKey
}

// New loads or creates the simulated signer in signerDir, starts the TPM
// simulator (seeded, so the AK is the same in every run) and extends
// EventLog into it.
func New(signerDir string) (*Guest, error) {
	signer, err := sim.LoadOrCreate(signerDir)
	if err != nil {
		return nil, err
	}
	s, err := simulator.GetWithFixedSeedInsecure(1)
	if err != nil {
		return nil, fmt.Errorf("starting TPM simulator: %w", err)
	}
	g := &Guest{Signer: signer, sim: s}
	if err := tpmtest.ExtendLog(s, EventLog); err != nil {
		g.Close()
		return nil, err
	}
	if g.ak, err = tpm.NewAttester(s); err != nil {
		g.Close()
		return nil, err
	}
	if g.rk, err = tpm.NewDecryptionKey(s); err != nil {
		g.Close()
		return nil, err
	}
	return g, nil
}

// Close stops the TPM simulator.
func (g *Guest) Close() error {
	if g.rk != nil {
		g.rk.Close()
	}
	if g.ak != nil {
		g.ak.Close()
	}
	return g.sim.Close()
}

// AK returns the attestation key.
func (g *Guest) AK() crypto.PublicKey { return g.ak.AKPublic() }

// RuntimeKey returns the runtime key.
func (g *Guest) RuntimeKey() crypto.PublicKey { return g.rk.Public() }

// DecryptKey returns the runtime key's TPM handle (for unwrapping).
func (g *Guest) DecryptKey() *tpm.DecryptKey { return g.rk }

// Options change the evidence; the zero value is good evidence for the
// sim-sev-snp kind with Measurement().
type Options struct {
	// Kind is the envelope's TEE kind; empty: sim-sev-snp.
	Kind evidence.Kind
	// Measurement; zero: Measurement().
	Measurement [48]byte
	// Policy is the SNP guest policy; zero: sim.DefaultPolicy.
	Policy uint64
	// VMPL is the report's VMPL.
	VMPL uint32
	// HostData is HOST_DATA.
	HostData [32]byte
	// Workload is the runtime data's workload object.
	Workload json.RawMessage
	// AK replaces the AK named in the runtime data (the quote is still
	// signed by the TPM's AK).
	AK crypto.PublicKey
	// ReportData replaces REPORT_DATA; nil: SHA-512 of the runtime data.
	ReportData func(runtimeData []byte) [64]byte
	// ExtraData replaces the quote's extraData; nil: SHA-256 of the
	// runtime data.
	ExtraData func(runtimeData []byte) []byte
	// NoTPM leaves the vTPM evidence out.
	NoTPM bool
	// EventLog replaces the event log sent; nil: EventLog.
	EventLog []byte
	// Report edits the signed report (use Signer.Resign to keep it signed).
	Report func(report []byte) ([]byte, error)
	// TPM edits the attestation protobuf.
	TPM func(*pb.Attestation)
}

// Evidence makes an envelope for nonce.
func (g *Guest) Evidence(nonce []byte, o Options) (*evidence.Envelope, error) {
	ak := o.AK
	if ak == nil {
		ak = g.ak.AKPublic()
	}
	rd, err := evidence.NewRuntimeData(nonce, ak, g.rk.Public(), o.Workload)
	if err != nil {
		return nil, err
	}
	rdBytes, err := rd.Marshal()
	if err != nil {
		return nil, err
	}
	req := sim.Request{Measurement: o.Measurement, Policy: o.Policy, VMPL: o.VMPL, HostData: o.HostData}
	if req.Measurement == ([48]byte{}) {
		req.Measurement = Measurement()
	}
	req.ReportData = evidence.ReportData(rdBytes)
	if o.ReportData != nil {
		req.ReportData = o.ReportData(rdBytes)
	}
	report, table, err := g.Signer.Sign(req)
	if err != nil {
		return nil, err
	}
	if o.Report != nil {
		if report, err = o.Report(report); err != nil {
			return nil, err
		}
	}
	env := &evidence.Envelope{Version: evidence.Version, TEE: o.Kind, RuntimeData: rdBytes, Report: report, CertTable: table}
	if env.TEE == "" {
		env.TEE = evidence.KindSimSNP
	}
	if !o.NoTPM {
		extra := evidence.TPMNonce(rdBytes)
		extraData := extra[:]
		if o.ExtraData != nil {
			extraData = o.ExtraData(rdBytes)
		}
		log := o.EventLog
		if log == nil {
			log = EventLog
		}
		att, err := g.ak.Attest(extraData, log)
		if err != nil {
			return nil, err
		}
		if o.TPM != nil {
			var a pb.Attestation
			if err := proto.Unmarshal(att, &a); err != nil {
				return nil, err
			}
			o.TPM(&a)
			if att, err = proto.Marshal(&a); err != nil {
				return nil, err
			}
		}
		env.TPM = att
	}
	return env, nil
}

// EvidenceJSON is Evidence encoded as the request body of POST /v1/attest.
func (g *Guest) EvidenceJSON(nonce []byte, o Options) ([]byte, error) {
	env, err := g.Evidence(nonce, o)
	if err != nil {
		return nil, err
	}
	return env.Encode()
}

// PCRs returns the guest's verified sha256 PCR values (index → hex), from
// a fresh attestation.
func (g *Guest) PCRs() (map[int]string, error) {
	nonce := make([]byte, 32)
	att, err := g.ak.Attest(nonce, EventLog)
	if err != nil {
		return nil, err
	}
	c, err := tpm.Verify(att, g.ak.AKPublic(), nonce, tpm.Options{})
	if err != nil {
		return nil, err
	}
	if !c.SecureBoot.Enabled {
		return nil, errors.New("test event log does not have secure boot on")
	}
	return c.PCRs["sha256"], nil
}

// TamperedEventLog returns EventLog with every digest of its first
// measured event flipped: it parses, but no longer replays to the PCRs.
func TamperedEventLog() []byte {
	log := bytes.Clone(EventLog)
	le := binary.LittleEndian
	specSize := int(le.Uint32(log[28:]))
	spec := log[32 : 32+specSize]
	algSize := map[uint16]int{}
	for i := range int(le.Uint32(spec[24:])) {
		algSize[le.Uint16(spec[28+4*i:])] = int(le.Uint16(spec[30+4*i:]))
	}
	ev := 32 + specSize
	p := ev + 12
	for range int(le.Uint32(log[ev+8:])) {
		alg := le.Uint16(log[p:])
		log[p+2] ^= 0xff
		p += 2 + algSize[alg]
	}
	return log
}
