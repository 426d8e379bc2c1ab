package offline

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/confidant-cvm/confidant/shared/evidence"
	tdxpkg "github.com/confidant-cvm/confidant/shared/tee/tdx"
	"github.com/confidant-cvm/confidant/verifier/internal/appraise"
	"github.com/confidant-cvm/confidant/verifier/internal/policy"
	"github.com/confidant-cvm/confidant/verifier/internal/token"
)

var (
	update = flag.Bool("update", false, "rewrite the golden claim set (testdata/golden/claims.json)")
	record = flag.Bool("record", false, "record new golden evidence with the test guest (needs cgo), then rewrite the claim set")
)

// Recorded hardware evidence (see testdata/README.md).
var (
	//go:embed testdata/milan-report.bin
	milanReport []byte
	//go:embed testdata/milan-vcek.der
	milanVCEK []byte
	//go:embed testdata/tdx_prod_quote_SPR_E4.dat
	sprQuote []byte
)

// milanNow lies within the Milan VCEK's validity (2022-09-24 to 2029-09-24).
var milanNow = time.Date(2024, 6, 1, 0, 0, 0, 0, time.UTC)

// sprNow lies within the validity of the SPR quote's PCK chain.
var sprNow = time.Date(2023, 7, 1, 1, 0, 0, 0, time.UTC)

const (
	policies  = "../../../policies/appraisal"
	goldenDir = "testdata/golden"
)

func flip(b []byte, off int) []byte {
	c := bytes.Clone(b)
	c[off] ^= 1
	return c
}

func TestInspectSNP(t *testing.T) {
	got := InspectSNP(SNPInput{Report: milanReport, VCEK: milanVCEK, Now: milanNow})
	if !got.Verified || len(got.Reasons) != 0 {
		t.Fatalf("recorded Milan report did not verify: %+v", got)
	}
	b, _ := json.Marshal(got)
	for _, want := range []string{`"verified":true`, `"product":"Milan"`, `"debug":true`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("output lacks %s: %s", want, b)
		}
	}
	tests := map[string]struct {
		in   SNPInput
		want string
	}{
		"flipped measurement": {in: SNPInput{Report: flip(milanReport, 0x95), VCEK: milanVCEK, Now: milanNow}, want: "signature"},
		"no VCEK":             {in: SNPInput{Report: milanReport, Now: milanNow}, want: "certificate"},
		"VCEK expired":        {in: SNPInput{Report: milanReport, VCEK: milanVCEK, Now: time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC)}, want: "chain"},
		"short":               {in: SNPInput{Report: milanReport[:100], VCEK: milanVCEK, Now: milanNow}, want: "1184"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			got := InspectSNP(tt.in)
			if got.Verified || len(got.Reasons) == 0 || got.Unverified == nil {
				t.Fatalf("%+v", got)
			}
			if !strings.Contains(strings.ToLower(strings.Join(got.Reasons, " ")), tt.want) {
				t.Errorf("reasons %q lack %q", got.Reasons, tt.want)
			}
		})
	}
}

func TestInspectTDX(t *testing.T) {
	got := InspectTDX(TDXInput{Quote: sprQuote, Now: sprNow})
	if !got.Verified {
		t.Fatalf("recorded SPR quote did not verify: %+v", got)
	}
	if got.Claims == nil {
		t.Fatal("no claims")
	}
	bad := InspectTDX(TDXInput{Quote: flip(sprQuote, len(sprQuote)-200), Now: sprNow})
	if bad.Verified || len(bad.Reasons) == 0 {
		t.Fatalf("tampered quote: %+v", bad)
	}
	if garbage := InspectTDX(TDXInput{Quote: []byte("nope"), Now: sprNow}); garbage.Verified {
		t.Fatal("garbage verified")
	}
}

// TestProductionPolicyRefusesRecordedMilan: the real Milan report is
// authentic, but its guest policy allows debugging and SMT; the shipped
// SNP production policy must refuse it.
func TestProductionPolicyRefusesRecordedMilan(t *testing.T) {
	ins := InspectSNP(SNPInput{Report: milanReport, VCEK: milanVCEK, Now: milanNow})
	if !ins.Verified {
		t.Fatal(ins.Reasons)
	}
	b, _ := json.Marshal(ins.Claims)
	var tee map[string]any
	json.Unmarshal(b, &tee)
	tee["kind"] = "sev-snp"
	set, err := policy.Load(context.Background(), []string{policies + "/snp_production.rego"},
		"../../../policies/reference-values.example.json", policy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	p, _ := set.For("sev-snp")
	d, err := p.Evaluate(context.Background(), map[string]any{"kind": "sev-snp", "tee": tee})
	if err != nil {
		t.Fatal(err)
	}
	if d.Verdict != policy.Contraindicated || !contains(d.Reasons, "guest policy allows debugging") {
		t.Fatalf("decision %+v", d)
	}
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

type goldenFiles struct {
	evidence, simRoot []byte
	now               time.Time
}

func readGolden(t *testing.T) goldenFiles {
	t.Helper()
	var g goldenFiles
	var err error
	if g.evidence, err = os.ReadFile(filepath.Join(goldenDir, "evidence.json")); err != nil {
		t.Fatal(err)
	}
	if g.simRoot, err = os.ReadFile(filepath.Join(goldenDir, "sim-root.pem")); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(goldenDir, "now.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if g.now, err = time.Parse(time.RFC3339, strings.TrimSpace(string(b))); err != nil {
		t.Fatal(err)
	}
	return g
}

// TestGoldenClaims pins the complete claim set of a token for fixed
// evidence (testdata/golden/evidence.json, made by the test guest), fixed
// reference values and policy, a fixed clock and a fixed token ID.
// Refresh the claims with: go test ./verifier/internal/offline -run TestGoldenClaims -update
// (for example after a policy change); record new evidence with -record.
func TestGoldenClaims(t *testing.T) {
	if *record {
		recordGolden(t)
	}
	g := readGolden(t)
	root, err := parseCert(g.simRoot)
	if err != nil {
		t.Fatal(err)
	}
	res, err := appraiseResult(context.Background(), AppraiseInput{
		Evidence: g.evidence, PolicyFiles: []string{policies + "/sim_development.rego"},
		ReferenceFile: filepath.Join(goldenDir, "reference.json"), Now: g.now, SimRoot: root, Audience: "disk-key",
	})
	if err != nil {
		t.Fatal(err)
	}
	c := res.Claims
	if err := token.Stamp(c, "https://verifier.example", g.now, token.DefaultTTL, bytes.NewReader(make([]byte, 16))); err != nil {
		t.Fatal(err)
	}
	m, err := c.Map()
	if err != nil {
		t.Fatal(err)
	}
	got, _ := json.MarshalIndent(m, "", "  ")
	got = append(got, '\n')
	path := filepath.Join(goldenDir, "claims.json")
	if *update || *record {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("claim set differs from %s (refresh with -update if intended):\n%s", path, got)
	}

	// The offline appraisal prints the same claims minus the token-only ones.
	off, err := Appraise(context.Background(), AppraiseInput{
		Evidence: g.evidence, PolicyFiles: []string{policies + "/sim_development.rego"},
		ReferenceFile: filepath.Join(goldenDir, "reference.json"), Now: g.now, SimRoot: root,
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"iss", "iat", "exp", "jti", "aud"} {
		if _, ok := off[k]; ok {
			t.Errorf("offline claims carry %s", k)
		}
	}
	if off["status"] != m["status"] || off["sub"] != m["sub"] {
		t.Errorf("offline claims differ: %v", off)
	}
}

func TestAppraiseOfflineDenials(t *testing.T) {
	g := readGolden(t)
	root, _ := parseCert(g.simRoot)
	in := AppraiseInput{
		Evidence: g.evidence, PolicyFiles: []string{policies + "/sim_development.rego"},
		ReferenceFile: filepath.Join(goldenDir, "reference.json"), Now: g.now, SimRoot: root,
	}
	emptyRef := filepath.Join(t.TempDir(), "ref.json")
	os.WriteFile(emptyRef, []byte(`{"version":1}`), 0o644)
	env, _ := evidence.Decode(g.evidence)
	env.TEE, env.Report, env.CertTable = evidence.KindTDX, sprQuote, nil
	tdxEvidence, _ := env.Encode()
	env.Report = flip(sprQuote, len(sprQuote)-300)
	tamperedTDX, _ := env.Encode()
	tdx := func(ev []byte, now time.Time) func(*AppraiseInput) {
		return func(in *AppraiseInput) {
			in.Evidence, in.Now = ev, now
			in.PolicyFiles = []string{policies + "/tdx_production.rego"}
		}
	}

	tests := map[string]struct {
		edit       func(*AppraiseInput)
		wantErr    error
		wantReason string
	}{
		"sim root not trusted": {edit: func(in *AppraiseInput) { in.SimRoot = nil },
			wantErr: appraise.ErrDenied, wantReason: "not trusted"},
		"no reference values": {edit: func(in *AppraiseInput) { in.ReferenceFile = emptyRef },
			wantErr: appraise.ErrDenied, wantReason: "no reference value for sim-sev-snp.measurements"},
		"certificates expired": {edit: func(in *AppraiseInput) { in.Now = g.now.AddDate(30, 0, 0) },
			wantErr: appraise.ErrDenied, wantReason: "chain"},
		"tdx quote not bound": {edit: tdx(tdxEvidence, sprNow),
			wantErr: appraise.ErrDenied, wantReason: "REPORT_DATA is not SHA-512"},
		"tdx quote signature": {edit: tdx(tamperedTDX, sprNow),
			wantErr: tdxpkg.ErrSignature, wantReason: "tdx: invalid signature"},
		"tdx PCK chain expired": {edit: tdx(tdxEvidence, time.Date(2045, 1, 1, 0, 0, 0, 0, time.UTC)),
			wantErr: tdxpkg.ErrChain, wantReason: "tdx: untrusted PCK certificate chain"},
		"malformed": {edit: func(in *AppraiseInput) { in.Evidence = []byte("{}") }, wantErr: evidence.ErrMalformed},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			in := in
			tt.edit(&in)
			_, err := Appraise(context.Background(), in)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("got %v, want %v", err, tt.wantErr)
			}
			if tt.wantReason != "" && !strings.Contains(strings.Join(appraise.Reasons(err), "\n"), tt.wantReason) {
				t.Fatalf("reasons %q lack %q", appraise.Reasons(err), tt.wantReason)
			}
		})
	}
}
