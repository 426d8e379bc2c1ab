//go:build genexample

package evidence_test

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"os"
	"testing"

	"github.com/google/go-tpm-tools/client"
	"github.com/google/go-tpm-tools/simulator"
	"google.golang.org/protobuf/proto"

	"github.com/confidant-cvm/confidant/shared/evidence"
	"github.com/confidant-cvm/confidant/shared/tee/snp/sim"
)

// TestGenerateExample writes testdata/envelope.example.json: a simulated
// SNP report and a TPM-simulator quote, both bound to the same runtime data.
//
//	CGO_ENABLED=1 go test -tags genexample -run TestGenerateExample ./shared/evidence/
func TestGenerateExample(t *testing.T) {
	tpm, err := simulator.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer tpm.Close()
	ak, err := client.AttestationKeyECC(tpm)
	if err != nil {
		t.Fatal(err)
	}
	defer ak.Close()
	// Stands in for the vTPM runtime key (RSA-2048, decryption).
	runtimeKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	nonce := bytes.Repeat([]byte{0x4e}, 32)
	rd, err := evidence.NewRuntimeData(nonce, ak.PublicKey(), &runtimeKey.PublicKey, json.RawMessage(`{"name":"example"}`))
	if err != nil {
		t.Fatal(err)
	}
	rdBytes, err := rd.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	tpmNonce := evidence.TPMNonce(rdBytes)
	att, err := ak.Attest(client.AttestOpts{Nonce: tpmNonce[:], TCGEventLog: []byte{}, SkipTeeAttestation: true})
	if err != nil {
		t.Fatal(err)
	}
	tpmBytes, err := proto.Marshal(att)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := sim.Create(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	req := sim.Request{ReportData: evidence.ReportData(rdBytes)}
	copy(req.Measurement[:], bytes.Repeat([]byte{0x11}, 48))
	report, table, err := signer.Sign(req)
	if err != nil {
		t.Fatal(err)
	}
	env := &evidence.Envelope{
		Version:     evidence.Version,
		TEE:         evidence.KindSimSNP,
		RuntimeData: rdBytes,
		Report:      report,
		CertTable:   table,
		TPM:         tpmBytes,
	}
	b, err := env.Encode()
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := json.Indent(&out, b, "", "  "); err != nil {
		t.Fatal(err)
	}
	out.WriteByte('\n')
	if err := os.WriteFile("testdata/envelope.example.json", out.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}
