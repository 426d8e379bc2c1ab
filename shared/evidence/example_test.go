package evidence_test

import (
	"bytes"
	"crypto"
	"encoding/binary"
	"os"
	"testing"
	"time"

	"github.com/google/go-sev-guest/abi"
	"github.com/google/go-tpm-tools/proto/attest"
	"github.com/google/go-tpm-tools/server"
	"google.golang.org/protobuf/proto"

	"github.com/confidant-cvm/confidant/shared/evidence"
	"github.com/confidant-cvm/confidant/shared/tee/snp"
)

// TestExample decodes testdata/envelope.example.json (made by
// example_gen_test.go) and checks that it is coherent: the runtime data is
// canonical, the simulated report carries SHA-512 of it and verifies against
// its own simulated root, and the TPM quote carries SHA-256 of it and is
// signed by the AK in it.
func TestExample(t *testing.T) {
	b, err := os.ReadFile("testdata/envelope.example.json")
	if err != nil {
		t.Fatal(err)
	}
	env, err := evidence.Decode(b)
	if err != nil {
		t.Fatalf("Decode(example): %v", err)
	}
	if env.Version != evidence.Version || env.TEE != evidence.KindSimSNP || len(env.CertTable) == 0 || len(env.TPM) == 0 {
		t.Fatalf("example = %+v, want a complete simulated SNP envelope", env)
	}
	rd, err := evidence.ParseRuntimeData(env.RuntimeData)
	if err != nil {
		t.Fatalf("ParseRuntimeData(example): %v", err)
	}
	if !bytes.Equal(rd.Workload, []byte(`{"name":"example"}`)) {
		t.Errorf("workload = %s", rd.Workload)
	}

	// The report: REPORT_DATA binding and signature, with the table's ARK
	// (self-consistency only; a verifier pins its simulated root).
	var table abi.CertTable
	if err := table.Unmarshal(env.CertTable); err != nil {
		t.Fatal(err)
	}
	arkDER, err := table.GetByGUIDString(abi.ArkGUID)
	if err != nil {
		t.Fatal(err)
	}
	root, err := snp.ParseSimRoot(pemCert(arkDER))
	if err != nil {
		t.Fatal(err)
	}
	reportData := evidence.ReportData(env.RuntimeData)
	claims, err := snp.Verify(env.Report, env.CertTable, snp.Options{
		SimRoot:    root,
		Now:        func() time.Time { return time.Date(2027, 6, 1, 0, 0, 0, 0, time.UTC) },
		ReportData: reportData[:],
		AllowSMT:   true,
	})
	if err != nil {
		t.Fatalf("snp.Verify(example report): %v", err)
	}
	if !claims.Simulated || binary.LittleEndian.Uint32(env.Report) != 3 {
		t.Errorf("claims = %+v", claims)
	}

	// The TPM quote: nonce binding and AK signature.
	var att attest.Attestation
	if err := proto.Unmarshal(env.TPM, &att); err != nil {
		t.Fatalf("unmarshalling TPM attestation: %v", err)
	}
	akPub, err := rd.AKPublic()
	if err != nil {
		t.Fatal(err)
	}
	nonce := evidence.TPMNonce(env.RuntimeData)
	if _, err := server.VerifyAttestation(&att, server.VerifyOpts{Nonce: nonce[:], TrustedAKs: []crypto.PublicKey{akPub}}); err != nil {
		t.Errorf("server.VerifyAttestation(example TPM evidence): %v", err)
	}
	wrong := nonce
	wrong[0] ^= 1
	if _, err := server.VerifyAttestation(&att, server.VerifyOpts{Nonce: wrong[:], TrustedAKs: []crypto.PublicKey{akPub}}); err == nil {
		t.Error("TPM evidence verified with the wrong nonce")
	}
}
