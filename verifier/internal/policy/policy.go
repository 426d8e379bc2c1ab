// Package policy loads appraisal policies (Rego, OPA v1) and reference
// values, and evaluates them over verified claims.
//
// # Policy contract
//
// An appraisal policy is one Rego v1 module in its own package. It defines:
//
//   - kinds: the set of TEE kinds it appraises ("sev-snp", "tdx",
//     "sim-sev-snp"); each kind has at most one policy.
//   - result: an object {"verdict": V, "reasons": [...], "claims": {...}}
//     where V is "affirming", "warning" or "contraindicated", reasons are
//     strings explaining the verdict (every failed check, not only the
//     first) and claims are added to the token (names the verifier sets
//     itself are refused).
//
// The input is the verified evidence (see the appraise package) and
// input.now, the verifier's clock as integer Unix nanoseconds; the
// reference values file is mounted at data.reference. Policies run in a
// sandbox (sandbox.go): pure, deterministic built-ins only, each
// evaluation bounded in time. The Go side fails closed: an undefined
// result, an unknown verdict, malformed reasons or claims are a
// "contraindicated" decision; built-in errors are evaluation errors, not
// silently undefined.
//
// Queries are prepared once per load (rego.PrepareForEval); a Holder swaps
// in a new Set atomically on reload, so requests never see a half-loaded
// policy and are never dropped.
package policy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
)

// Verdicts.
const (
	Affirming       = "affirming"
	Warning         = "warning"
	Contraindicated = "contraindicated"
)

// ReferenceVersion is the only reference values format version.
const ReferenceVersion = 1

// Sentinel errors.
var (
	// ErrNoPolicy means no loaded policy appraises the TEE kind.
	ErrNoPolicy = errors.New("no appraisal policy for this TEE kind")
	// ErrLoad means a policy or reference values file is invalid.
	ErrLoad = errors.New("invalid policy or reference values")
	// ErrEvaluation means the policy failed while evaluating (a built-in
	// error, conflicting outputs, a timeout).
	ErrEvaluation = errors.New("policy evaluation failed")
)

// Decision is what a policy decided.
type Decision struct {
	// Verdict is Affirming, Warning or Contraindicated.
	Verdict string
	// Reasons explain the verdict; for Contraindicated there is at least one.
	Reasons []string
	// Claims are added to the token.
	Claims map[string]any
}

// Allowed reports whether the decision lets a token be issued.
func (d *Decision) Allowed() bool { return d.Verdict == Affirming || d.Verdict == Warning }

// Policy is one prepared appraisal policy.
type Policy struct {
	// ID is the policy's Rego package (without "data.").
	ID string
	// SHA256 is the hex digest of the policy file.
	SHA256 string
	// File is where it was loaded from.
	File string
	// Source is the file content.
	Source []byte
	// Kinds are the TEE kinds it appraises.
	Kinds []string

	query    rego.PreparedEvalQuery
	reserved func(string) bool
	timeout  time.Duration
}

// ReferenceValues is one loaded reference values file.
type ReferenceValues struct {
	// SHA256 is the hex digest of the file.
	SHA256 string
	// File is where it was loaded from.
	File string
	// Content is the file content.
	Content []byte
	data    map[string]any
}

// Set is an immutable snapshot of the loaded policies and reference values.
type Set struct {
	// Policies in the order of their files.
	Policies []*Policy
	// Reference is the reference values the policies see.
	Reference *ReferenceValues
	byKind    map[string]*Policy
}

// Options configure loading.
type Options struct {
	// Reserved reports claim names a policy may not add; nil allows all.
	Reserved func(name string) bool
	// Timeout bounds each evaluation of a policy (and of its kinds at
	// load); zero means DefaultTimeout.
	Timeout time.Duration
}

// Source is a policy or reference values document and where it came from.
type Source struct {
	// Name is a file path, or a name like "store:policy:sev-snp".
	Name    string
	Content []byte
}

// Overrides replace what the files say: a policy per TEE kind (the policy
// must declare that kind; it then appraises that kind instead of the file
// that declares it) and the reference values. The admin API loads them
// and keeps them in the store.
type Overrides struct {
	Policies  map[string]Source
	Reference *Source
}

// Load reads, compiles and prepares the policy files with the reference
// values file as data.reference. Every problem is reported at once.
func Load(ctx context.Context, policyFiles []string, referenceFile string, opts Options) (*Set, error) {
	return LoadWith(ctx, policyFiles, referenceFile, nil, opts)
}

// LoadWith is Load with overrides (nil: none).
func LoadWith(ctx context.Context, policyFiles []string, referenceFile string, o *Overrides, opts Options) (*Set, error) {
	if len(policyFiles) == 0 {
		return nil, fmt.Errorf("loading policies: no policy file: %w", ErrLoad)
	}
	var refSrc Source
	if o != nil && o.Reference != nil {
		refSrc = *o.Reference
	} else {
		b, err := os.ReadFile(referenceFile)
		if err != nil {
			return nil, fmt.Errorf("loading reference values: %w", errors.Join(ErrLoad, err))
		}
		refSrc = Source{Name: referenceFile, Content: b}
	}
	ref, err := ParseReference(refSrc)
	if err != nil {
		return nil, err
	}
	set := &Set{Reference: ref, byKind: map[string]*Policy{}}
	overridden := map[string]bool{}
	if o != nil {
		for k := range o.Policies {
			overridden[k] = true
		}
	}
	var errs []error
	for _, f := range policyFiles {
		src, err := os.ReadFile(f)
		if err != nil {
			errs = append(errs, fmt.Errorf("loading policy: %w", errors.Join(ErrLoad, err)))
			continue
		}
		p, err := compilePolicy(ctx, Source{Name: f, Content: src}, ref, opts)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		used := false
		for _, k := range p.Kinds {
			if overridden[k] {
				continue
			}
			if other, dup := set.byKind[k]; dup {
				errs = append(errs, fmt.Errorf("loading policy %s: TEE kind %q is already appraised by %s: %w", f, k, other.File, ErrLoad))
				continue
			}
			set.byKind[k] = p
			used = true
		}
		if used {
			set.Policies = append(set.Policies, p)
		}
	}
	if o != nil {
		kinds := slices.Sorted(maps.Keys(o.Policies))
		for _, k := range kinds {
			p, err := compilePolicy(ctx, o.Policies[k], ref, opts)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			if !slices.Contains(p.Kinds, k) {
				errs = append(errs, fmt.Errorf("loading policy %s for %s: it appraises %v, not %s: %w", o.Policies[k].Name, k, p.Kinds, k, ErrLoad))
				continue
			}
			set.byKind[k] = p
			set.Policies = append(set.Policies, p)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return set, nil
}

// ParseReference checks a reference values document: JSON, one object,
// "version": ReferenceVersion.
func ParseReference(src Source) (*ReferenceValues, error) {
	var data map[string]any
	dec := json.NewDecoder(bytes.NewReader(src.Content))
	dec.UseNumber()
	if err := dec.Decode(&data); err != nil {
		return nil, fmt.Errorf("loading reference values %s: %w", src.Name, errors.Join(ErrLoad, err))
	}
	if dec.More() {
		return nil, fmt.Errorf("loading reference values %s: trailing data: %w", src.Name, ErrLoad)
	}
	if v, ok := data["version"].(json.Number); !ok || v.String() != fmt.Sprint(ReferenceVersion) {
		return nil, fmt.Errorf("loading reference values %s: \"version\" must be %d: %w", src.Name, ReferenceVersion, ErrLoad)
	}
	sum := sha256.Sum256(src.Content)
	return &ReferenceValues{SHA256: hex.EncodeToString(sum[:]), File: src.Name, Content: bytes.Clone(src.Content), data: data}, nil
}

func compilePolicy(ctx context.Context, s Source, ref *ReferenceValues, opts Options) (*Policy, error) {
	file, src := s.Name, s.Content
	mod, err := ast.ParseModuleWithOpts(filepath.Base(file), string(src), ast.ParserOptions{RegoVersion: ast.RegoV1})
	if err != nil {
		return nil, fmt.Errorf("parsing policy %s: %w", file, errors.Join(ErrLoad, err))
	}
	if mod == nil {
		return nil, fmt.Errorf("parsing policy %s: empty module: %w", file, ErrLoad)
	}
	pkg := strings.TrimPrefix(mod.Package.Path.String(), "data.")
	store := inmem.NewFromObject(map[string]any{"reference": ref.data})
	prepare := func(query string) (rego.PreparedEvalQuery, error) {
		return Prepare(ctx, mod, query, rego.Store(store))
	}
	kindsQ, err := prepare("data." + pkg + ".kinds")
	if err != nil {
		return nil, fmt.Errorf("compiling policy %s: %w", file, errors.Join(ErrLoad, err))
	}
	rs, err := Eval(ctx, kindsQ, opts.Timeout, nil)
	if err != nil {
		return nil, fmt.Errorf("evaluating kinds of policy %s: %w", file, errors.Join(ErrLoad, err))
	}
	kinds, err := stringSet(rs)
	if err != nil || len(kinds) == 0 {
		return nil, fmt.Errorf("policy %s: \"kinds\" must be a non-empty set of TEE kinds: %w", file, ErrLoad)
	}
	q, err := prepare("data." + pkg + ".result")
	if err != nil {
		return nil, fmt.Errorf("compiling policy %s: %w", file, errors.Join(ErrLoad, err))
	}
	sum := sha256.Sum256(src)
	return &Policy{
		ID: pkg, SHA256: hex.EncodeToString(sum[:]), File: file, Source: bytes.Clone(src), Kinds: kinds,
		query: q, reserved: opts.Reserved, timeout: opts.Timeout,
	}, nil
}

func stringSet(rs rego.ResultSet) ([]string, error) {
	if len(rs) != 1 || len(rs[0].Expressions) != 1 {
		return nil, errors.New("undefined")
	}
	vals, ok := rs[0].Expressions[0].Value.([]any)
	if !ok {
		return nil, errors.New("not a set")
	}
	out := make([]string, 0, len(vals))
	for _, v := range vals {
		s, ok := v.(string)
		if !ok {
			return nil, errors.New("not a string")
		}
		out = append(out, s)
	}
	sort.Strings(out)
	return out, nil
}

// Kinds returns the TEE kinds the set appraises, sorted.
func (s *Set) Kinds() []string { return slices.Sorted(maps.Keys(s.byKind)) }

// fingerprint identifies what the set decides with: which policy
// (digest) appraises each kind, and the reference values.
func (s *Set) fingerprint() string {
	var b strings.Builder
	for _, k := range s.Kinds() {
		fmt.Fprintf(&b, "%s=%s;", k, s.byKind[k].SHA256)
	}
	return b.String() + "ref=" + s.Reference.SHA256
}

// For returns the policy that appraises kind, or ErrNoPolicy.
func (s *Set) For(kind string) (*Policy, error) {
	p, ok := s.byKind[kind]
	if !ok {
		return nil, fmt.Errorf("appraising %s evidence: %w", kind, ErrNoPolicy)
	}
	return p, nil
}

// Timeout returns the bound of each evaluation of the policy.
func (p *Policy) Timeout() time.Duration {
	if p.timeout <= 0 {
		return DefaultTimeout
	}
	return p.timeout
}

// Evaluate runs the policy over input (a JSON-like value: maps, slices,
// strings, json.Number/float64, bools) and returns its decision. An
// undefined or malformed result is a Contraindicated decision; failures of
// the evaluation itself are ErrEvaluation; running past the time limit is
// ErrEvaluation and ErrTimeout.
func (p *Policy) Evaluate(ctx context.Context, input any) (*Decision, error) {
	rs, err := Eval(ctx, p.query, p.timeout, input)
	if err != nil {
		return nil, fmt.Errorf("evaluating policy %s: %w", p.ID, errors.Join(ErrEvaluation, err))
	}
	return p.decision(rs), nil
}

func deny(reason string) *Decision {
	return &Decision{Verdict: Contraindicated, Reasons: []string{reason}}
}

// decision turns the raw result into a Decision, failing closed.
func (p *Policy) decision(rs rego.ResultSet) *Decision {
	if len(rs) != 1 || len(rs[0].Expressions) != 1 {
		return deny(fmt.Sprintf("policy %s produced no result", p.ID))
	}
	obj, ok := rs[0].Expressions[0].Value.(map[string]any)
	if !ok {
		return deny(fmt.Sprintf("policy %s: result is not an object", p.ID))
	}
	var problems []string
	d := &Decision{Claims: map[string]any{}}
	switch v, _ := obj["verdict"].(string); v {
	case Affirming, Warning, Contraindicated:
		d.Verdict = v
	default:
		problems = append(problems, fmt.Sprintf("policy %s: unknown verdict %q", p.ID, fmt.Sprint(obj["verdict"])))
	}
	if raw, ok := obj["reasons"]; ok {
		var bad []string
		d.Reasons, bad = Reasons("policy "+p.ID, raw)
		problems = append(problems, bad...)
	}
	if raw, ok := obj["claims"]; ok {
		claims, ok := raw.(map[string]any)
		if !ok {
			problems = append(problems, fmt.Sprintf("policy %s: claims is not an object", p.ID))
		}
		for name, v := range claims {
			if p.reserved != nil && p.reserved(name) {
				problems = append(problems, fmt.Sprintf("policy %s: claim %q is reserved", p.ID, name))
				continue
			}
			d.Claims[name] = v
		}
	}
	for k := range obj {
		if k != "verdict" && k != "reasons" && k != "claims" {
			problems = append(problems, fmt.Sprintf("policy %s: unknown result field %q", p.ID, k))
		}
	}
	if len(problems) > 0 {
		return &Decision{Verdict: Contraindicated, Reasons: slices.Concat(d.Reasons, problems)}
	}
	if d.Verdict == Contraindicated && len(d.Reasons) == 0 {
		d.Reasons = []string{fmt.Sprintf("policy %s denied without a reason", p.ID)}
	}
	return d
}

// Reasons decodes a policy result's "reasons" value, which must be an array
// of strings. It returns the strings, and what is wrong with raw (an entry
// that is not a string, or raw not an array), each prefixed with who, e.g.
// "policy <id>".
func Reasons(who string, raw any) (reasons, problems []string) {
	list, ok := raw.([]any)
	if !ok {
		problems = append(problems, who+": reasons is not an array")
	}
	for _, r := range list {
		s, ok := r.(string)
		if !ok {
			problems = append(problems, fmt.Sprintf("%s: reason %v is not a string", who, r))
			continue
		}
		reasons = append(reasons, s)
	}
	return reasons, problems
}
