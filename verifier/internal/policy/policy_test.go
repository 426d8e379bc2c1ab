package policy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"
)

const shipped = "../../../policies"

func write(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadShippedPolicies(t *testing.T) {
	files := []string{
		filepath.Join(shipped, "appraisal/snp_production.rego"),
		filepath.Join(shipped, "appraisal/tdx_production.rego"),
		filepath.Join(shipped, "appraisal/sim_development.rego"),
	}
	s, err := Load(context.Background(), files, filepath.Join(shipped, "reference-values.example.json"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	for kind, id := range map[string]string{
		"sev-snp":     "confidant.appraisal.snp_production",
		"tdx":         "confidant.appraisal.tdx_production",
		"sim-sev-snp": "confidant.appraisal.sim_development",
	} {
		p, err := s.For(kind)
		if err != nil || p.ID != id || len(p.SHA256) != 64 {
			t.Errorf("For(%s) = %+v, %v", kind, p, err)
		}
	}
	// The shipped SNP policy denies empty input with reasons, no error.
	p, _ := s.For("sev-snp")
	d, err := p.Evaluate(context.Background(), map[string]any{})
	if err != nil || d.Verdict != Contraindicated || len(d.Reasons) < 5 {
		t.Fatalf("empty input: %+v, %v", d, err)
	}
}

func TestDecision(t *testing.T) {
	ctx := context.Background()
	reserved := func(n string) bool { return n == "sub" }
	s, err := Load(ctx, []string{"testdata/echo.rego"}, "testdata/ref.json", Options{Reserved: reserved})
	if err != nil {
		t.Fatal(err)
	}
	p, err := s.For("sim-sev-snp")
	if err != nil {
		t.Fatal(err)
	}
	tests := map[string]struct {
		want        any // the policy's result; nil: undefined
		verdict     string
		reasons     []string
		claims      map[string]any
		wantAllowed bool
	}{
		"affirming": {want: map[string]any{"verdict": "affirming", "reasons": []any{}, "claims": map[string]any{"a": "b"}},
			verdict: Affirming, claims: map[string]any{"a": "b"}, wantAllowed: true},
		"warning": {want: map[string]any{"verdict": "warning", "reasons": []any{"w"}},
			verdict: Warning, reasons: []string{"w"}, claims: map[string]any{}, wantAllowed: true},
		"contraindicated": {want: map[string]any{"verdict": "contraindicated", "reasons": []any{"r1", "r2"}},
			verdict: Contraindicated, reasons: []string{"r1", "r2"}},
		"undefined result": {verdict: Contraindicated, reasons: []string{"policy test.echo produced no result"}},
		"not an object":    {want: "affirming", verdict: Contraindicated, reasons: []string{"policy test.echo: result is not an object"}},
		"unknown verdict": {want: map[string]any{"verdict": "fine"}, verdict: Contraindicated,
			reasons: []string{`policy test.echo: unknown verdict "fine"`}},
		"missing verdict": {want: map[string]any{"reasons": []any{}}, verdict: Contraindicated,
			reasons: []string{`policy test.echo: unknown verdict "<nil>"`}},
		"reasons not strings": {want: map[string]any{"verdict": "affirming", "reasons": []any{1}}, verdict: Contraindicated,
			reasons: []string{"policy test.echo: reason 1 is not a string"}},
		"reserved claim": {want: map[string]any{"verdict": "affirming", "claims": map[string]any{"sub": "x"}}, verdict: Contraindicated,
			reasons: []string{`policy test.echo: claim "sub" is reserved`}},
		"unknown field": {want: map[string]any{"verdict": "affirming", "extra": 1}, verdict: Contraindicated,
			reasons: []string{`policy test.echo: unknown result field "extra"`}},
		"deny without reason": {want: map[string]any{"verdict": "contraindicated"}, verdict: Contraindicated,
			reasons: []string{"policy test.echo denied without a reason"}},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			in := map[string]any{}
			if tt.want != nil {
				in["want"] = tt.want
			}
			d, err := p.Evaluate(ctx, in)
			if err != nil {
				t.Fatal(err)
			}
			if d.Verdict != tt.verdict || !slices.Equal(d.Reasons, tt.reasons) || d.Allowed() != tt.wantAllowed {
				t.Fatalf("got %+v", d)
			}
			if tt.claims != nil && !reflect.DeepEqual(d.Claims, tt.claims) {
				t.Fatalf("claims %v, want %v", d.Claims, tt.claims)
			}
		})
	}
}

func TestBuiltinErrorsAreErrors(t *testing.T) {
	dir := t.TempDir()
	f := write(t, dir, "p.rego", `package strict
kinds := {"tdx"}
result := {"verdict": "affirming", "claims": {"x": hex.decode(input.bad)}}
`)
	s, err := Load(context.Background(), []string{f}, "testdata/ref.json", Options{})
	if err != nil {
		t.Fatal(err)
	}
	p, _ := s.For("tdx")
	if _, err := p.Evaluate(context.Background(), map[string]any{"bad": "zz"}); !errors.Is(err, ErrEvaluation) {
		t.Fatalf("got %v, want ErrEvaluation", err)
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	good := write(t, dir, "good.rego", "package good\nkinds := {\"tdx\"}\nresult := {\"verdict\": \"affirming\"}\n")
	dup := write(t, dir, "dup.rego", "package dup\nkinds := {\"tdx\"}\nresult := {\"verdict\": \"affirming\"}\n")
	noKinds := write(t, dir, "nokinds.rego", "package nokinds\nresult := {}\n")
	badKinds := write(t, dir, "badkinds.rego", "package badkinds\nkinds := {1}\nresult := {}\n")
	syntax := write(t, dir, "syntax.rego", "package syntax\nkinds := {\n")
	unsafe := write(t, dir, "unsafe.rego", "package unsafe\nkinds := {\"tdx\"}\nresult if x\n")
	v0 := write(t, dir, "v0.rego", "package v0\nkinds[\"tdx\"]\nresult = {} { true }\n")
	badRef := write(t, dir, "badref.json", `{"version": 2}`)
	notJSON := write(t, dir, "notjson.json", `{"version": 1`)
	tests := map[string]struct {
		files []string
		ref   string
	}{
		"no files":           {ref: "testdata/ref.json"},
		"missing file":       {files: []string{filepath.Join(dir, "absent.rego")}, ref: "testdata/ref.json"},
		"duplicate kind":     {files: []string{good, dup}, ref: "testdata/ref.json"},
		"no kinds":           {files: []string{noKinds}, ref: "testdata/ref.json"},
		"kinds not strings":  {files: []string{badKinds}, ref: "testdata/ref.json"},
		"syntax error":       {files: []string{syntax}, ref: "testdata/ref.json"},
		"unsafe rule":        {files: []string{unsafe}, ref: "testdata/ref.json"},
		"rego v0 syntax":     {files: []string{v0}, ref: "testdata/ref.json"},
		"reference version":  {files: []string{good}, ref: badRef},
		"reference not JSON": {files: []string{good}, ref: notJSON},
		"reference missing":  {files: []string{good}, ref: filepath.Join(dir, "absent.json")},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			if _, err := Load(context.Background(), tt.files, tt.ref, Options{}); !errors.Is(err, ErrLoad) {
				t.Fatalf("got %v, want ErrLoad", err)
			}
		})
	}
	s, err := Load(context.Background(), []string{good}, "testdata/ref.json", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.For("sev-snp"); !errors.Is(err, ErrNoPolicy) {
		t.Fatalf("For(unappraised kind) = %v, want ErrNoPolicy", err)
	}
}

func TestReferenceValuesAreData(t *testing.T) {
	dir := t.TempDir()
	f := write(t, dir, "p.rego", `package refd
kinds := {"tdx"}
result := {"verdict": "affirming", "claims": {"x": data.reference.x}}
`)
	s, err := Load(context.Background(), []string{f}, "testdata/ref.json", Options{})
	if err != nil {
		t.Fatal(err)
	}
	p, _ := s.For("tdx")
	d, err := p.Evaluate(context.Background(), map[string]any{})
	if err != nil || d.Claims["x"] == nil {
		t.Fatalf("%+v, %v", d, err)
	}
}

// policyVerdict writes a policy whose verdict is v.
func policyVerdict(v string) string {
	return "package reload\nkinds := {\"tdx\"}\nresult := {\"verdict\": \"" + v + "\", \"reasons\": [\"r\"]}\n"
}

func TestHolderReload(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	pf := write(t, dir, "p.rego", policyVerdict("affirming"))
	rf := write(t, dir, "ref.json", `{"version": 1}`)
	var recorded []string
	h, err := NewHolder(ctx, HolderConfig{PolicyFiles: []string{pf}, ReferenceFile: rf,
		OnLoad: func(_ context.Context, s *Set) error { recorded = append(recorded, s.Policies[0].SHA256); return nil }})
	if err != nil {
		t.Fatal(err)
	}
	first := h.Current()

	// Unchanged files: same set.
	if err := h.Reload(ctx); err != nil || h.Current() != first || len(recorded) != 1 {
		t.Fatalf("reload without change swapped the set (%v)", err)
	}
	// A broken policy keeps the previous set.
	write(t, dir, "p.rego", "package reload\nkinds := {")
	if err := h.Reload(ctx); !errors.Is(err, ErrLoad) || h.Current() != first {
		t.Fatalf("broken reload: %v; set swapped: %v", err, h.Current() != first)
	}
	// A good change is swapped in.
	write(t, dir, "p.rego", policyVerdict("warning"))
	if err := h.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	p, _ := h.Current().For("tdx")
	if d, _ := p.Evaluate(ctx, nil); d.Verdict != Warning || p.SHA256 == first.Policies[0].SHA256 || len(recorded) != 2 {
		t.Fatalf("after reload: %+v", d)
	}
	// A failing OnLoad (store down) keeps the previous set.
	h.cfg.OnLoad = func(context.Context, *Set) error { return errors.New("store down") }
	write(t, dir, "p.rego", policyVerdict("contraindicated"))
	cur := h.Current()
	if err := h.Reload(ctx); err == nil || h.Current() != cur {
		t.Fatal("set swapped although recording it failed")
	}
}

func TestHolderWatchesFilesAndSignal(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir := t.TempDir()
	pf := write(t, dir, "p.rego", policyVerdict("affirming"))
	rf := write(t, dir, "ref.json", `{"version": 1}`)
	h, err := NewHolder(ctx, HolderConfig{PolicyFiles: []string{pf}, ReferenceFile: rf, Debounce: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	reload := make(chan struct{})
	w, err := h.Watch()
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx, reload) }()

	// Evaluate continuously while files change: no request fails.
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			p, err := h.Current().For("tdx")
			if err != nil {
				t.Error(err)
				return
			}
			if _, err := p.Evaluate(ctx, nil); err != nil {
				t.Error(err)
				return
			}
		}
	})

	waitVerdict := func(want string) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) {
			p, _ := h.Current().For("tdx")
			if d, _ := p.Evaluate(ctx, nil); d.Verdict == want {
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Fatalf("verdict never became %s", want)
	}
	// Replace the file by rename, as editors and config managers do.
	tmp := write(t, dir, ".p.rego.tmp", policyVerdict("warning"))
	if err := os.Rename(tmp, pf); err != nil {
		t.Fatal(err)
	}
	waitVerdict(Warning)

	// A SIGHUP (delivered as a value on reload) reloads too. Change the
	// reference values in a directory the watcher does not see first.
	loads := h.Loads()
	h.cfg.ReferenceFile = write(t, t.TempDir(), "ref.json", `{"version": 1, "new": true}`)
	reload <- struct{}{}
	deadline := time.Now().Add(5 * time.Second)
	for h.Loads() == loads && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if h.Loads() == loads {
		t.Fatal("reload signal did not reload")
	}
	close(stop)
	wg.Wait()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestOverrides(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	both := write(t, dir, "both.rego", "package both\nkinds := {\"tdx\", \"sev-snp\"}\nresult := {\"verdict\": \"affirming\"}\n")
	over := Source{Name: "store:policy:tdx", Content: []byte("package over\nkinds := {\"tdx\"}\nresult := {\"verdict\": \"warning\"}\n")}
	s, err := LoadWith(ctx, []string{both}, "testdata/ref.json", &Overrides{Policies: map[string]Source{"tdx": over}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if p, _ := s.For("tdx"); p.ID != "over" || p.File != "store:policy:tdx" {
		t.Fatalf("tdx: %+v", p)
	}
	if p, _ := s.For("sev-snp"); p.ID != "both" {
		t.Fatalf("sev-snp keeps the file: %+v", p)
	}
	ref := Source{Name: "store:reference-values", Content: []byte(`{"version": 1, "x": 2}`)}
	s, err = LoadWith(ctx, []string{both}, "testdata/ref.json", &Overrides{Reference: &ref}, Options{})
	if err != nil || s.Reference.File != "store:reference-values" || s.Reference.SHA256 == "" {
		t.Fatalf("reference override: %+v, %v", s, err)
	}
	for name, o := range map[string]*Overrides{
		"kind not declared": {Policies: map[string]Source{"sim-sev-snp": over}},
		"does not compile":  {Policies: map[string]Source{"tdx": {Name: "x", Content: []byte("package x\nkinds := {")}}},
		"empty policy":      {Policies: map[string]Source{"tdx": {Name: "x"}}},
		"bad reference":     {Reference: &Source{Name: "r", Content: []byte(`{"version": 3}`)}},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := LoadWith(ctx, []string{both}, "testdata/ref.json", o, Options{}); !errors.Is(err, ErrLoad) {
				t.Fatalf("got %v, want ErrLoad", err)
			}
		})
	}
}

func TestHolderApply(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	pf := write(t, dir, "p.rego", policyVerdict("affirming"))
	var stored *Overrides
	h, err := NewHolder(ctx, HolderConfig{PolicyFiles: []string{pf}, ReferenceFile: "testdata/ref.json",
		Overrides: func(context.Context) (*Overrides, error) { return stored, nil }})
	if err != nil {
		t.Fatal(err)
	}
	src := Source{Name: "store:policy:tdx", Content: []byte(policyVerdict("warning"))}
	change := func(o *Overrides) { o.Policies["tdx"] = src }
	// A failing persist changes nothing.
	if _, err := h.Apply(ctx, change, func(context.Context, *Set) error { return errors.New("store down") }); err == nil {
		t.Fatal("Apply ignored the persist error")
	}
	if p, _ := h.Current().For("tdx"); p.SHA256 == sha256hexOf(src.Content) {
		t.Fatal("a failed Apply swapped the policy in")
	}
	// A broken policy is refused before persist.
	persisted := false
	if _, err := h.Apply(ctx, func(o *Overrides) { o.Policies["tdx"] = Source{Name: "x", Content: []byte("x")} },
		func(context.Context, *Set) error { persisted = true; return nil }); !errors.Is(err, ErrLoad) || persisted {
		t.Fatalf("broken policy: %v, persisted %v", err, persisted)
	}
	set, err := h.Apply(ctx, change, func(_ context.Context, s *Set) error {
		stored = &Overrides{Policies: map[string]Source{"tdx": src}}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if p, _ := set.For("tdx"); p.SHA256 != sha256hexOf(src.Content) || h.Current() != set {
		t.Fatalf("after Apply: %+v", p)
	}
	// Reloading keeps the stored override.
	if err := h.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if p, _ := h.Current().For("tdx"); p.SHA256 != sha256hexOf(src.Content) {
		t.Fatal("reload lost the override")
	}
}

func sha256hexOf(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
