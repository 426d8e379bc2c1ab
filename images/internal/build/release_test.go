package build

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/tester"

	"github.com/confidant-cvm/confidant/images/internal/keyregistry/admintest"
	"github.com/confidant-cvm/confidant/images/internal/measure"
)

// The measurement of policies/release/image_measurement_test.rego.
const shippedMeasurement = "2815d90c0708daa99149d47e98970263eb74b19a8daa42a9a92e3d58f52c904aee85f327c15424595c4b1a409bf1fb92"

func manifestWith(kind measure.Kind, hexes ...string) *Manifest {
	m := &Manifest{Name: "demo", Version: `1.0 "beta"`}
	for i, h := range hexes {
		m.Measurements = append(m.Measurements, measure.Measurement{Kind: kind, Measurement: h, VCPUs: i + 1})
	}
	return m
}

// runRegoTests runs the Rego tests in dir and returns the names of the
// failed ones, sorted; it fails t when there are none or one errs.
func runRegoTests(t *testing.T, dir string) (failed []string) {
	t.Helper()
	results, err := tester.Run(context.Background(), dir)
	if err != nil {
		t.Fatalf("running Rego tests: %v", err)
	}
	if len(results) < 5 {
		t.Fatalf("%d Rego tests ran", len(results))
	}
	for _, r := range results {
		if r.Error != nil {
			t.Fatalf("%s: %v", r.Name, r.Error)
		}
		if r.Fail || r.Skip {
			failed = append(failed, r.Name)
		}
	}
	slices.Sort(failed) // OPA's tester does not keep the file's order
	return failed
}

// TestReleasePolicySNPIsTheShippedOne: the generated SEV-SNP policy passes
// every test of policies/release/image_measurement.rego, so it decides as
// the shipped example does; without the tests' measurement it releases
// nothing.
func TestReleasePolicySNPIsTheShippedOne(t *testing.T) {
	testFile, err := os.ReadFile(filepath.Join(admintest.RepoRoot(t), "policies", "release", "image_measurement_test.rego"))
	if err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		hexes      []string
		wantFailed []string
	}{
		"the image's measurement": {hexes: []string{strings.Repeat("ab", 48), shippedMeasurement}},
		// Every test that expects the shipped measurement released fails.
		"another image": {hexes: []string{strings.Repeat("ab", 48)}, wantFailed: []string{"test_image_released", "test_two_vms_of_the_image_released"}},
	} {
		t.Run(name, func(t *testing.T) {
			src, err := ReleasePolicy(manifestWith(measure.KindSNP, tc.hexes...), "os-disk")
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			os.WriteFile(filepath.Join(dir, "policy.rego"), src, 0o644)
			os.WriteFile(filepath.Join(dir, "policy_test.rego"), testFile, 0o644)
			if failed := runRegoTests(t, dir); !slices.Equal(failed, tc.wantFailed) {
				t.Errorf("failed Rego tests %v, want %v\n%s", failed, tc.wantFailed, src)
			}
		})
	}
}

// evalRelease evaluates a release policy as the verifier does
// (verifier/internal/release: strict, data.key, the package's result) and
// returns allow and the reasons.
func evalRelease(t *testing.T, src []byte, claims map[string]any) (bool, []string) {
	t.Helper()
	mod, err := ast.ParseModuleWithOpts("release.rego", string(src), ast.ParserOptions{RegoVersion: ast.RegoV1})
	if err != nil {
		t.Fatalf("parsing the policy: %v\n%s", err, src)
	}
	rs, err := rego.New(
		rego.Query(mod.Package.Path.String()+".result"),
		rego.ParsedModule(mod),
		rego.Store(inmem.NewFromObject(map[string]any{"key": map[string]any{"name": "os-disk", "version": 1, "origin": "platform"}})),
		rego.StrictBuiltinErrors(true),
		rego.Strict(true),
		rego.SetRegoVersion(ast.RegoV1),
		rego.Input(claims),
	).Eval(context.Background())
	if err != nil || len(rs) != 1 || len(rs[0].Expressions) != 1 {
		t.Fatalf("evaluating the policy: %v, %v", rs, err)
	}
	res := rs[0].Expressions[0].Value.(map[string]any)
	var reasons []string
	for _, r := range res["reasons"].([]any) {
		reasons = append(reasons, r.(string))
	}
	return res["allow"] == true && len(reasons) == 0, reasons
}

// claims are a token's claims in JSON form, patched by path.
func claims(t *testing.T, base string, patch map[string]any) map[string]any {
	t.Helper()
	var c map[string]any
	if err := json.Unmarshal([]byte(base), &c); err != nil {
		t.Fatal(err)
	}
	for path, v := range patch {
		obj := c
		parts := strings.Split(path, ".")
		for _, p := range parts[:len(parts)-1] {
			obj = obj[p].(map[string]any)
		}
		if v == nil {
			delete(obj, parts[len(parts)-1])
		} else {
			obj[parts[len(parts)-1]] = v
		}
	}
	return c
}

// TestReleasePolicySim: the simulated image's policy releases to a
// simulated guest with the image's measurement, and to nothing else.
func TestReleasePolicySim(t *testing.T) {
	m1, m2, other := strings.Repeat("a1", 48), strings.Repeat("b2", 48), strings.Repeat("c3", 48)
	src, err := ReleasePolicy(manifestWith(measure.KindSim, m1, m2), "os-disk")
	if err != nil {
		t.Fatal(err)
	}
	good := `{"status": "warning", "dbgstat": 3, "hwmodel": "confidant simulated AMD SEV-SNP (Milan)",
		"tee": {"kind": "sim-sev-snp", "simulated": true, "measurement": "` + m1 + `", "policy": {"debug": false}}}`
	tests := map[string]struct {
		patch      map[string]any
		wantReason string // "": released
	}{
		"warning":                {},
		"affirming":              {patch: map[string]any{"status": "affirming"}},
		"other vCPU count":       {patch: map[string]any{"tee.measurement": m2}},
		"other measurement":      {patch: map[string]any{"tee.measurement": other}, wantReason: "launch measurement " + other + " is not one of image os-disk's"},
		"upper-case measurement": {patch: map[string]any{"tee.measurement": strings.ToUpper(m1)}, wantReason: "is not one of image"},
		"no measurement":         {patch: map[string]any{"tee.measurement": nil}, wantReason: "launch measurement missing"},
		"contraindicated":        {patch: map[string]any{"status": "contraindicated"}, wantReason: "token status is contraindicated, want affirming or warning"},
		"no status":              {patch: map[string]any{"status": nil}, wantReason: "token status is missing"},
		"hardware kind":          {patch: map[string]any{"tee.kind": "sev-snp"}, wantReason: "want the simulated AMD SEV-SNP"},
		"not simulated":          {patch: map[string]any{"tee.simulated": false}, wantReason: "want the simulated AMD SEV-SNP"},
		"hardware model":         {patch: map[string]any{"hwmodel": "AMD SEV-SNP Milan"}, wantReason: "hardware is AMD SEV-SNP Milan (sim-sev-snp)"},
		"no model":               {patch: map[string]any{"hwmodel": nil}, wantReason: "hardware is missing"},
		"debug":                  {patch: map[string]any{"tee.policy": map[string]any{"debug": true}}, wantReason: "guest policy allows debugging"},
		"no guest policy":        {patch: map[string]any{"tee.policy": nil}, wantReason: "guest policy allows debugging"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			allow, reasons := evalRelease(t, src, claims(t, good, tc.patch))
			if tc.wantReason == "" {
				if !allow {
					t.Errorf("denied: %v", reasons)
				}
				return
			}
			if allow || !slices.ContainsFunc(reasons, func(r string) bool { return strings.Contains(r, tc.wantReason) }) {
				t.Errorf("allow %v, reasons %q, want one with %q", allow, reasons, tc.wantReason)
			}
		})
	}
	if allow, reasons := evalRelease(t, src, map[string]any{}); allow || len(reasons) != 4 {
		t.Errorf("empty claims: allow %v, reasons %q, want 4", allow, reasons)
	}

	// The hardware image's policy refuses the simulation, with the same
	// measurement.
	snp, err := ReleasePolicy(manifestWith(measure.KindSNP, m1), "os-disk")
	if err != nil {
		t.Fatal(err)
	}
	if allow, reasons := evalRelease(t, snp, claims(t, good, map[string]any{"status": "affirming"})); allow {
		t.Errorf("the SEV-SNP policy released to the simulation: %v", reasons)
	}
}

func TestReleasePolicyRendering(t *testing.T) {
	m := manifestWith(measure.KindSim, strings.Repeat("b2", 48), strings.Repeat("a1", 48))
	a, err := ReleasePolicy(m, "k")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := ReleasePolicy(m, "k")
	if !bytes.Equal(a, b) {
		t.Error("two renderings differ")
	}
	// Sorted by measurement; the version quoted.
	want := "image_measurements := {\n\t\"" + strings.Repeat("a1", 48) + "\": \"demo 1.0 \\\"beta\\\", 2 vCPUs\",\n\t\"" + strings.Repeat("b2", 48) + "\": \"demo 1.0 \\\"beta\\\", 1 vCPUs\",\n}\n"
	if !strings.Contains(string(a), want) || !strings.Contains(string(a), "package "+ReleasePackageSim+"\n") {
		t.Errorf("policy:\n%s\nlacks\n%s", a, want)
	}
	if err := checkReleasePolicy(a); err != nil {
		t.Error(err)
	}

	for name, m := range map[string]*Manifest{
		"none":         manifestWith(measure.KindSim),
		"two kinds":    {Measurements: []measure.Measurement{{Kind: measure.KindSim, Measurement: strings.Repeat("a", 96)}, {Kind: measure.KindSNP, Measurement: strings.Repeat("a", 96)}}},
		"unknown kind": manifestWith("tdx", strings.Repeat("a", 96)),
		"not hex":      manifestWith(measure.KindSim, strings.Repeat("A", 96)),
		"short":        manifestWith(measure.KindSim, "aa"),
		"injection":    manifestWith(measure.KindSim, strings.Repeat("a", 95)+"\"}\nresult := {\"allow\": true, \"reasons\": []}\n#"),
	} {
		if _, err := ReleasePolicy(m, "k"); err == nil {
			t.Errorf("%s: rendered", name)
		}
	}
}

func TestCheckReleasePolicy(t *testing.T) {
	for name, tc := range map[string]struct {
		src     []byte
		wantErr error
	}{
		"good":      {src: []byte("package p\n")},
		"empty":     {src: []byte{}, wantErr: ErrSpec},
		"too large": {src: bytes.Repeat([]byte("#"), MaxReleasePolicy+1), wantErr: ErrSpec},
		"largest":   {src: bytes.Repeat([]byte("#"), MaxReleasePolicy)},
		"not UTF-8": {src: []byte("package p\n# \xff\n"), wantErr: ErrSpec},
	} {
		if err := checkReleasePolicy(tc.src); !errors.Is(err, tc.wantErr) {
			t.Errorf("%s: %v, want %v", name, err, tc.wantErr)
		}
	}
}

// TestReleasePolicySimUEFI: the simulated UEFI image's policy passes
// testdata/sim_secure_boot_test.rego: it releases only with status
// affirming, never warning, and otherwise as the direct-boot one; and the
// direct-boot one (which accepts warning) fails the warning test.
func TestReleasePolicySimUEFI(t *testing.T) {
	testFile, err := os.ReadFile(filepath.Join("testdata", "sim_secure_boot_test.rego"))
	if err != nil {
		t.Fatal(err)
	}
	m := manifestWith(measure.KindSim, strings.Repeat("a1", 48), strings.Repeat("b2", 48))
	m.Boot = BootUEFI
	src, err := ReleasePolicy(m, "os-disk")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(src), "package "+ReleasePackageSimUEFI+"\n") {
		t.Fatalf("policy:\n%s", src)
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "policy.rego"), src, 0o644)
	os.WriteFile(filepath.Join(dir, "policy_test.rego"), testFile, 0o644)
	if failed := runRegoTests(t, dir); len(failed) != 0 {
		t.Errorf("failed Rego tests %v\n%s", failed, src)
	}

	// The direct-boot policy under the same tests: warning is released.
	m.Boot = BootDirect
	direct, err := ReleasePolicy(m, "os-disk")
	if err != nil {
		t.Fatal(err)
	}
	direct = bytes.Replace(direct, []byte("package "+ReleasePackageSim), []byte("package "+ReleasePackageSimUEFI), 1)
	os.WriteFile(filepath.Join(dir, "policy.rego"), direct, 0o644)
	failed := runRegoTests(t, dir)
	if !slices.Contains(failed, "test_warning_denied") {
		t.Errorf("the direct-boot policy passes test_warning_denied (failed: %v)", failed)
	}
}

// TestReferenceValuesPCRs: a UEFI image's predicted PCRs go into its kind's
// section as one accepted value each; a direct-boot image has no "pcrs".
func TestReferenceValuesPCRs(t *testing.T) {
	pcrs := map[string]string{"4": strings.Repeat("04", 32), "7": strings.Repeat("07", 32), "11": strings.Repeat("0b", 32)}
	for _, kind := range []measure.Kind{measure.KindSNP, measure.KindSim} {
		m := manifestWith(kind, strings.Repeat("a1", 48))
		m.Boot, m.PCRs = BootUEFI, pcrs
		b, err := referenceValues(m)
		if err != nil {
			t.Fatal(err)
		}
		var doc map[string]struct {
			Measurements map[string]ReferenceValue      `json:"measurements"`
			PCRs         map[string]map[string][]string `json:"pcrs"`
			MinimumTCB   *referenceTCB                  `json:"minimum_tcb"`
			AllowSMT     bool                           `json:"allow_smt"`
		}
		var raw map[string]json.RawMessage
		if err := json.Unmarshal(b, &raw); err != nil || string(raw["version"]) != "1" {
			t.Fatalf("reference values %s: %v", b, err)
		}
		delete(raw, "version")
		rb, _ := json.Marshal(raw)
		if err := json.Unmarshal(rb, &doc); err != nil {
			t.Fatal(err)
		}
		sec, ok := doc[string(kind)]
		if !ok || len(doc) != 1 || len(sec.Measurements) != 1 {
			t.Fatalf("%s: reference values\n%s", kind, b)
		}
		for i, v := range pcrs {
			if !slices.Equal(sec.PCRs["sha256"][i], []string{v}) {
				t.Errorf("%s: PCR %s = %v, want [%s]", kind, i, sec.PCRs["sha256"][i], v)
			}
		}
		// The simulated UEFI section is complete for sim_production: the
		// simulated platform's TCB as the minimum, SMT as hostd allows it.
		// Hardware minimums are the security team's.
		wantTCB := (*referenceTCB)(nil)
		if kind == measure.KindSim {
			wantTCB = &referenceTCB{BL: 4, TEE: 0, SNP: 22, Microcode: 213}
		}
		if !reflect.DeepEqual(sec.MinimumTCB, wantTCB) || sec.AllowSMT != (kind == measure.KindSim) {
			t.Errorf("%s: minimum_tcb %+v allow_smt %v, want %+v and %v", kind, sec.MinimumTCB, sec.AllowSMT, wantTCB, kind == measure.KindSim)
		}
		m.Boot, m.PCRs = BootDirect, nil
		if b, _ := referenceValues(m); bytes.Contains(b, []byte(`"pcrs"`)) {
			t.Errorf("%s: a direct-boot image has PCRs:\n%s", kind, b)
		}
	}
}
