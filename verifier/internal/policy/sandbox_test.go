package policy

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
)

// sandboxPolicy is an appraisal policy for sim-sev-snp whose verdict
// depends on expr (a Rego expression; the verdict is affirming when it
// holds).
func sandboxPolicy(expr string) string {
	return fmt.Sprintf(`package test.sandbox

kinds := {"sim-sev-snp"}

ok if {
	%s
}

result := {"verdict": "affirming", "reasons": []} if ok
`, expr)
}

// TestForbiddenBuiltinsRefused: a policy that can reach the network, the
// process, the clock or randomness, or write output, does not load, and the
// error names the built-in — from a file and from an override (the admin
// API's path) alike.
func TestForbiddenBuiltinsRefused(t *testing.T) {
	tests := map[string]struct {
		builtin string
		expr    string
	}{
		"network":            {"http.send", `http.send({"method": "GET", "url": "http://127.0.0.1:1/"}).status_code == 200`},
		"DNS":                {"net.lookup_ip_addr", `count(net.lookup_ip_addr("example.com")) > 0`},
		"runtime (env)":      {"opa.runtime", `opa.runtime().env.HOME != ""`},
		"clock":              {"time.now_ns", `time.now_ns() > 0`},
		"clock via mock":     {"time.now_ns", `true with time.now_ns as 1`},
		"randomness":         {"rand.intn", `rand.intn("x", 10) >= 0`},
		"UUID":               {"uuid.rfc4122", `uuid.rfc4122("x") != ""`},
		"JWT with clock":     {"io.jwt.decode_verify", `io.jwt.decode_verify("a.b.c", {"secret": "s"})[0]`},
		"JWT signing":        {"io.jwt.encode_sign", `io.jwt.encode_sign({"alg": "HS256"}, {}, {"kty": "oct", "k": "AA"}) != ""`},
		"x509 with clock":    {"crypto.x509.parse_and_verify_certificates", `crypto.x509.parse_and_verify_certificates("x")[0]`},
		"remote schema":      {"json.match_schema", `json.match_schema({}, {"$ref": "http://127.0.0.1:1/s.json"})[0]`},
		"print":              {"print", `print("leak", input)`},
		"trace":              {"trace", `trace("leak")`},
		"parse module":       {"rego.parse_module", `rego.parse_module("x.rego", "package x") != {}`},
		"AWS request sign":   {"providers.aws.sign_req", `providers.aws.sign_req({}, {}, 0) != {}`},
		"nested in a call":   {"time.now_ns", `count([time.now_ns()]) == 1`},
		"in a comprehension": {"rand.intn", `count({x | some i in [1, 2]; x := rand.intn("k", i)}) > 0`},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			src := sandboxPolicy(tt.expr)
			file := write(t, dir, "p.rego", src)
			want := fmt.Sprintf("policy uses built-in %q, which is not allowed: policies must be pure and deterministic", tt.builtin)
			check := func(how string, err error) {
				t.Helper()
				if !errors.Is(err, ErrLoad) || !errors.Is(err, ErrNotPure) {
					t.Fatalf("%s: err = %v, want ErrLoad and ErrNotPure", how, err)
				}
				if !strings.Contains(err.Error(), want) {
					t.Fatalf("%s: error %q does not say %q", how, err, want)
				}
			}
			_, err := Load(context.Background(), []string{file}, "testdata/ref.json", Options{})
			check("file", err)
			_, err = LoadWith(context.Background(), []string{"testdata/echo.rego"}, "testdata/ref.json",
				&Overrides{Policies: map[string]Source{"sim-sev-snp": {Name: "store:policy:sim-sev-snp", Content: []byte(src)}}}, Options{})
			check("override", err)
		})
	}
}

// TestEveryForbiddenBuiltinNamed: each forbidden built-in a policy uses is
// reported, once, with its line.
func TestEveryForbiddenBuiltinNamed(t *testing.T) {
	src := sandboxPolicy("time.now_ns() > 0\n\trand.intn(\"a\", 2) >= 0\n\ttime.now_ns() > 1")
	mod, err := ast.ParseModuleWithOpts("p.rego", src, ast.ParserOptions{RegoVersion: ast.RegoV1})
	if err != nil {
		t.Fatal(err)
	}
	err = CheckBuiltins(mod)
	msg := fmt.Sprint(err)
	if strings.Count(msg, `"time.now_ns"`) != 1 || !strings.Contains(msg, `line 7: policy uses built-in "rand.intn"`) {
		t.Fatalf("got %q", msg)
	}
}

// TestPureBuiltinsAllowed: pure built-ins load and evaluate, including the
// ones that look like I/O but are not.
func TestPureBuiltinsAllowed(t *testing.T) {
	tests := map[string]string{
		"cidr expand":     `count(net.cidr_expand("10.0.0.0/30")) == 4`,
		"cidr contains":   `net.cidr_contains("10.0.0.0/8", "10.1.2.3")`,
		"x509 parse":      fmt.Sprintf(`crypto.x509.parse_certificates(%q)[0].Subject.CommonName == "policy test"`, testCertPEM(t)),
		"numbers.range":   `count(numbers.range(0, 3)) == 4`,
		"time from input": `time.parse_rfc3339_ns("2026-01-02T03:04:05Z") < input.now`,
		"hashes":          `crypto.sha256("a") != crypto.sha1("a")`,
		"semver":          `semver.compare("1.2.3", "1.10.0") == -1`,
		"jwt decode":      `count(io.jwt.decode("eyJhbGciOiJub25lIn0.e30.")) == 3`,
		"template string": `$"n={input.now}" != ""`,
	}
	for name, expr := range tests {
		t.Run(name, func(t *testing.T) {
			file := write(t, t.TempDir(), "p.rego", sandboxPolicy(expr))
			s, err := Load(context.Background(), []string{file}, "testdata/ref.json", Options{})
			if err != nil {
				t.Fatal(err)
			}
			p, _ := s.For("sim-sev-snp")
			d, err := p.Evaluate(context.Background(), map[string]any{"now": time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC).UnixNano()})
			if err != nil || d.Verdict != Affirming {
				t.Fatalf("got %+v, %v", d, err)
			}
		})
	}
}

// testCertPEM returns a self-signed certificate (PEM) named "policy test".
func testCertPEM(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "policy test"},
		NotBefore: time.Unix(0, 0), NotAfter: time.Unix(1<<32, 0)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

// TestAllowedBuiltinsExist: every allowed built-in exists in this OPA, is
// deterministic and is not deprecated; the capabilities carry exactly them
// and no network host.
func TestAllowedBuiltinsExist(t *testing.T) {
	for _, name := range allowedBuiltins() {
		b, ok := ast.BuiltinMap[name]
		switch {
		case !ok:
			t.Errorf("allowed built-in %q does not exist in this OPA", name)
		case b.IsNondeterministic():
			t.Errorf("allowed built-in %q is non-deterministic", name)
		case b.IsDeprecated():
			t.Errorf("allowed built-in %q is deprecated", name)
		}
	}
	caps := Capabilities()
	if len(caps.Builtins) != len(allowedBuiltins()) {
		t.Errorf("capabilities hold %d built-ins, the allow-list %d", len(caps.Builtins), len(allowedBuiltins()))
	}
	if caps.AllowNet == nil || len(caps.AllowNet) != 0 {
		t.Errorf("AllowNet = %#v, want empty (no host)", caps.AllowNet)
	}
}

// TestCompilerRefusesOutsideCapabilities: the capabilities are a second
// wall behind CheckBuiltins — the compiler itself does not know the
// forbidden built-ins.
func TestCompilerRefusesOutsideCapabilities(t *testing.T) {
	for _, q := range []string{`x := http.send({"method": "GET", "url": "http://127.0.0.1:1/"})`, `x := time.now_ns()`, `x := opa.runtime()`} {
		_, err := rego.New(append(regoOptions(), rego.Query(q))...).PrepareForEval(context.Background())
		if err == nil || !strings.Contains(err.Error(), "undefined function") {
			t.Errorf("%s: compiled (%v)", q, err)
		}
	}
}

// heavy are CPU-bound policies that would run for minutes: a comprehension
// over a huge range, and a triple loop over a literal array that allocates
// nothing.
func heavy() map[string]string {
	var xs strings.Builder
	for i := range 1000 {
		if i > 0 {
			xs.WriteString(", ")
		}
		fmt.Fprint(&xs, i)
	}
	return map[string]string{
		"range comprehension": `count([x | some i in numbers.range(1, 100000000); x := i]) > 0`,
		"nested loops":        fmt.Sprintf("xs := [%s]\n\tcount({x | some a in xs; some b in xs; some c in xs; x := (a * b * c) %% 7}) > 100", xs.String()),
	}
}

// TestEvaluationIsBounded: a CPU-heavy appraisal policy is stopped at its
// time limit with ErrTimeout (an evaluation failure, never a decision).
func TestEvaluationIsBounded(t *testing.T) {
	for name, expr := range heavy() {
		t.Run(name, func(t *testing.T) {
			file := write(t, t.TempDir(), "p.rego", sandboxPolicy(expr))
			s, err := Load(context.Background(), []string{file}, "testdata/ref.json", Options{Timeout: 200 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			p, _ := s.For("sim-sev-snp")
			d, err := p.Evaluate(context.Background(), map[string]any{})
			if !errors.Is(err, ErrTimeout) || !errors.Is(err, ErrEvaluation) || d != nil {
				t.Fatalf("got %+v, %v; want ErrTimeout", d, err)
			}
		})
	}
}

// TestKindsAreBoundedAtLoad: evaluating a policy's kinds at load is
// bounded too, so a load (an admin request) cannot hang.
func TestKindsAreBoundedAtLoad(t *testing.T) {
	src := `package test.heavykinds

kinds contains "sim-sev-snp" if count([x | some i in numbers.range(1, 100000000); x := i]) > 0

result := {"verdict": "affirming", "reasons": []}
`
	file := write(t, t.TempDir(), "p.rego", src)
	_, err := Load(context.Background(), []string{file}, "testdata/ref.json", Options{Timeout: 200 * time.Millisecond})
	if !errors.Is(err, ErrTimeout) || !errors.Is(err, ErrLoad) {
		t.Fatalf("got %v, want ErrLoad and ErrTimeout", err)
	}
}

// TestCallerCancelIsNotTimeout: a caller that gives up is not reported as
// the policy's timeout.
func TestCallerCancelIsNotTimeout(t *testing.T) {
	file := write(t, t.TempDir(), "p.rego", sandboxPolicy(heavy()["range comprehension"]))
	s, err := Load(context.Background(), []string{file}, "testdata/ref.json", Options{Timeout: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	p, _ := s.For("sim-sev-snp")
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err = p.Evaluate(ctx, map[string]any{})
	if !errors.Is(err, ErrEvaluation) || !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrTimeout) {
		t.Fatalf("got %v", err)
	}
}

// TestShippedPoliciesInSandbox: every shipped appraisal policy loads in the
// sandbox (TestLoadShippedPolicies evaluates them).
func TestShippedPoliciesInSandbox(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(shipped, "appraisal", "*.rego"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, f := range files {
		if strings.HasSuffix(f, "_test.rego") {
			continue
		}
		n++
		if _, err := Load(context.Background(), []string{f}, filepath.Join(shipped, "reference-values.example.json"), Options{}); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	if n < 3 {
		t.Fatalf("found %d shipped policies", n)
	}
}

// TestResultPastDeadlineRefused: the bound is on the whole evaluation; a
// result that arrives after the deadline is not used.
func TestResultPastDeadlineRefused(t *testing.T) {
	_, err := Load(context.Background(), []string{"testdata/echo.rego"}, "testdata/ref.json", Options{Timeout: time.Nanosecond})
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("load with a 1 ns bound: %v", err)
	}
	s, err := Load(context.Background(), []string{"testdata/echo.rego"}, "testdata/ref.json", Options{})
	if err != nil {
		t.Fatal(err)
	}
	p, _ := s.For("sim-sev-snp")
	p.timeout = time.Nanosecond
	d, err := p.Evaluate(context.Background(), map[string]any{"want": map[string]any{"verdict": "affirming"}})
	if !errors.Is(err, ErrTimeout) || d != nil {
		t.Fatalf("got %+v, %v", d, err)
	}
}
