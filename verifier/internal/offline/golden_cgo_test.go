//go:build cgo

package offline

import (
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/confidant-cvm/confidant/verifier/internal/testguest"
)

// recordGolden makes new golden evidence with the test guest (TPM
// simulator and simulated SNP signer).
func recordGolden(t *testing.T) {
	t.Helper()
	g, err := testguest.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	pcrs, err := g.PCRs()
	if err != nil {
		t.Fatal(err)
	}
	nonce := make([]byte, 64)
	for i := range nonce {
		nonce[i] = byte(i)
	}
	var hostData [32]byte
	copy(hostData[:], "golden-guest")
	body, err := g.EvidenceJSON(nonce, testguest.Options{HostData: hostData, Workload: json.RawMessage(`{"service":"golden"}`)})
	if err != nil {
		t.Fatal(err)
	}
	m := testguest.Measurement()
	ref, _ := json.MarshalIndent(map[string]any{
		"version": 1,
		"sim-sev-snp": map[string]any{
			"measurements": map[string]any{hex.EncodeToString(m[:]): map[string]any{"name": "confidant-golden-image"}},
			"pcrs":         map[string]any{"sha256": map[string]any{"0": []string{pcrs[0]}, "7": []string{pcrs[7]}}},
		},
	}, "", "  ")
	now := time.Now().UTC().Truncate(time.Second).Add(time.Minute)
	for name, content := range map[string][]byte{
		"evidence.json":  body,
		"sim-root.pem":   g.Signer.RootPEM(),
		"reference.json": append(ref, '\n'),
		"now.txt":        []byte(now.Format(time.RFC3339) + "\n"),
	} {
		if err := os.MkdirAll(goldenDir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(goldenDir, name), content, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
