// Package loadgen drives a running verifier with many simulated agents,
// each doing what confidant-agent does at boot: challenge → attest
// (→ key release), with evidence the verifier checks for real.
//
// Evidence is realistic and cheap to make. The SNP report is signed by the
// simulated AMD secure processor (shared/tee/snp/sim, P-384) over
// SHA-512 of the runtime data, with its certificate table. The vTPM
// evidence is go-tpm-tools' attest.Attestation in its real wire format:
// each agent holds a P-256 AK in software whose TPMT_PUBLIC says what a
// TPM-resident AK says (fixedTPM, fixedParent, sensitiveDataOrigin,
// restricted, sign; ECDSA SHA-256), and quotes — TPMS_ATTEST structures
// marshalled with go-tpm's tpm2 types — every PCR bank of a recorded UEFI
// boot (EventLog) replayed in software, so the verifier's strict event-log
// replay passes. Per-agent keys (AK, RSA-2048 runtime key) are made before
// the clock starts; per request the generator signs one report and one
// quote per bank.
//
// Init writes what a verifier needs to accept that evidence: the simulated
// signer's chain (the generator signs with it), its root to trust, the
// development appraisal policy and reference values holding the generator's
// measurement and PCR values.
package loadgen

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/confidant-cvm/confidant/policies"
	"github.com/confidant-cvm/confidant/shared/evidence"
	"github.com/confidant-cvm/confidant/shared/tee/snp/sim"
)

// Files Init writes into its directory.
const (
	// SignerDir holds the simulated signer's chain and keys (sim.Create).
	SignerDir = "signer"
	// RootFile is the simulated ARK certificate: serve --sim-root.
	RootFile = "sim-root.pem"
	// PolicyFile is the appraisal policy: serve --policy.
	PolicyFile = "policy.rego"
	// ReferenceFile is the reference values: serve --reference-values.
	ReferenceFile = "reference.json"
)

// Setup is what Init wrote.
type Setup struct {
	// Dir is the directory.
	Dir string
	// Signer is the simulated secure processor.
	Signer *sim.Signer
	// Measurement is the agents' launch measurement (hex).
	Measurement string
	// PCRs are the pinned sha256 PCR values (index → hex).
	PCRs map[string]string
}

// Path returns the path of a file in the setup directory.
func (s *Setup) Path(name string) string { return filepath.Join(s.Dir, name) }

// Init creates a new simulated signer in dir/signer and writes
// dir/sim-root.pem, dir/policy.rego and dir/reference.json so that a
// verifier started with
//
//	confidant-verifier serve --sim-root dir/sim-root.pem \
//	  --policy dir/policy.rego --reference-values dir/reference.json
//
// affirms the generator's evidence. It refuses a directory that already
// holds any of these files (fs.ErrExist).
func Init(dir string) (*Setup, error) {
	for _, name := range []string{SignerDir, RootFile, PolicyFile, ReferenceFile} {
		if _, err := os.Lstat(filepath.Join(dir, name)); !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("initializing %s: %s: %w", dir, name, fs.ErrExist)
		}
	}
	img, err := NewImage(EventLog)
	if err != nil {
		return nil, err
	}
	bank := img.Bank("sha256")
	if bank == nil {
		return nil, errors.New("initializing: the event log has no sha256 bank")
	}
	signer, err := sim.Create(filepath.Join(dir, SignerDir))
	if err != nil {
		return nil, fmt.Errorf("initializing %s: %w", dir, err)
	}
	m := Measurement()
	s := &Setup{Dir: dir, Signer: signer, Measurement: hex.EncodeToString(m[:]), PCRs: bank.HexPCRs()}
	ref, err := s.reference()
	if err != nil {
		return nil, err
	}
	for _, f := range []struct {
		name string
		data []byte
	}{
		{RootFile, signer.RootPEM()},
		{PolicyFile, policies.SimDevelopmentAppraisal()},
		{ReferenceFile, ref},
	} {
		if err := writeNew(filepath.Join(dir, f.name), f.data); err != nil {
			return nil, fmt.Errorf("initializing %s: %w", dir, err)
		}
	}
	return s, nil
}

// reference encodes the reference values (policies/README.md format): the
// measurement, named MeasurementName, and every sha256 PCR the log extends.
func (s *Setup) reference() ([]byte, error) {
	pcrs := map[string][]string{}
	for idx, v := range s.PCRs {
		pcrs[idx] = []string{v}
	}
	ref := map[string]any{
		"version": 1,
		string(evidence.KindSimSNP): map[string]any{
			"measurements": map[string]any{s.Measurement: map[string]string{"name": MeasurementName}},
			"pcrs":         map[string]any{"sha256": pcrs},
		},
	}
	b, err := json.MarshalIndent(ref, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encoding reference values: %w", err)
	}
	return append(b, '\n'), nil
}

// LoadSigner loads the simulated signer Init wrote into dir.
func LoadSigner(dir string) (*sim.Signer, error) {
	s, err := sim.Load(filepath.Join(dir, SignerDir))
	if err != nil {
		return nil, fmt.Errorf("loading the generator's signer (run init first?): %w", err)
	}
	return s, nil
}

func writeNew(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
