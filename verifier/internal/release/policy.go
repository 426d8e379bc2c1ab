package release

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage/inmem"

	"github.com/confidant-cvm/confidant/verifier/internal/policy"
)

// MaxPolicySize bounds a release policy's source.
const MaxPolicySize = 256 << 10

// cacheSize bounds the compiled policies kept (one per key version and
// policy digest).
const cacheSize = 1024

// Policy is one compiled release policy for one key version.
//
// # Contract
//
// A release policy is one Rego v1 module in its own package defining
// result: {"allow": true|false, "reasons": [...]}. The input is the claims
// of the token (already verified) and input.now, the verifier's clock as
// integer Unix nanoseconds (it replaces a claim of that name); data.key is
// {"name", "version", "origin"} of the key asked for. It runs in the same
// sandbox as appraisal policies (policy.Prepare): pure, deterministic
// built-ins only, each evaluation bounded in time. The key is released only when allow is
// the boolean true and reasons is empty; anything else (an undefined
// result, a missing or non-boolean allow, allow with reasons, unknown
// fields) is a denial with every reason listed. Errors of the evaluation
// itself (built-in errors) are ErrPolicyEvaluation; running past the time
// limit is ErrPolicyEvaluation and policy.ErrTimeout.
type Policy struct {
	// ID is the policy's Rego package (without "data.").
	ID string
	// SHA256 is the hex digest of the source.
	SHA256 string
	query  rego.PreparedEvalQuery
}

// KeyParams are what a policy sees as data.key.
type KeyParams struct {
	Name    string
	Version int
	Origin  string
}

// Decision is what a release policy decided.
type Decision struct {
	Allow   bool
	Reasons []string
}

// PolicyDigest returns the hex SHA-256 of a policy source.
func PolicyDigest(src []byte) string {
	s := sha256.Sum256(src)
	return hex.EncodeToString(s[:])
}

// CheckPolicy parses and compiles a release policy source, reporting every
// problem (ErrInvalidPolicy), without a key.
func CheckPolicy(ctx context.Context, src []byte) (*Policy, error) {
	return compile(ctx, src, KeyParams{Name: "check", Version: 1, Origin: "platform"})
}

func compile(ctx context.Context, src []byte, key KeyParams) (*Policy, error) {
	if len(src) == 0 {
		return nil, fmt.Errorf("%w: empty policy", ErrInvalidPolicy)
	}
	if len(src) > MaxPolicySize {
		return nil, fmt.Errorf("%w: policy is %d bytes, at most %d", ErrInvalidPolicy, len(src), MaxPolicySize)
	}
	mod, err := ast.ParseModuleWithOpts("release.rego", string(src), ast.ParserOptions{RegoVersion: ast.RegoV1})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidPolicy, err)
	}
	if mod == nil {
		return nil, fmt.Errorf("%w: no package", ErrInvalidPolicy)
	}
	hasResult := false
	for _, r := range mod.Rules {
		if r.Head.Name.String() == "result" || (len(r.Head.Reference) == 1 && r.Head.Reference[0].Value.String() == "result") {
			hasResult = true
		}
	}
	if !hasResult {
		return nil, fmt.Errorf("%w: the policy defines no \"result\" rule", ErrInvalidPolicy)
	}
	pkg := strings.TrimPrefix(mod.Package.Path.String(), "data.")
	store := inmem.NewFromObject(map[string]any{"key": map[string]any{
		"name": key.Name, "version": key.Version, "origin": key.Origin,
	}})
	q, err := policy.Prepare(ctx, mod, "data."+pkg+".result", rego.Store(store))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidPolicy, err)
	}
	return &Policy{ID: pkg, SHA256: PolicyDigest(src), query: q}, nil
}

// Evaluate runs the policy over the token's claims, with now as input.now,
// stopped after timeout (zero: policy.DefaultTimeout).
func (p *Policy) Evaluate(ctx context.Context, claims map[string]any, now time.Time, timeout time.Duration) (*Decision, error) {
	input := make(map[string]any, len(claims)+1)
	maps.Copy(input, claims)
	input["now"] = now.UnixNano()
	rs, err := policy.Eval(ctx, p.query, timeout, input)
	if err != nil {
		return nil, fmt.Errorf("evaluating release policy %s: %w", p.ID, errors.Join(ErrPolicyEvaluation, err))
	}
	return p.decision(rs), nil
}

// PolicyTimeout returns the bound of each evaluation of a release policy.
func (s *Service) PolicyTimeout() time.Duration {
	if s.cfg.PolicyTimeout <= 0 {
		return policy.DefaultTimeout
	}
	return s.cfg.PolicyTimeout
}

func (p *Policy) deny(format string, args ...any) *Decision {
	return &Decision{Reasons: []string{fmt.Sprintf("release policy %s: ", p.ID) + fmt.Sprintf(format, args...)}}
}

// decision turns the raw result into a Decision, failing closed.
func (p *Policy) decision(rs rego.ResultSet) *Decision {
	if len(rs) != 1 || len(rs[0].Expressions) != 1 {
		return p.deny("produced no result")
	}
	obj, ok := rs[0].Expressions[0].Value.(map[string]any)
	if !ok {
		return p.deny("result is not an object")
	}
	d := &Decision{}
	var problems []string
	allow, ok := obj["allow"].(bool)
	if !ok {
		problems = append(problems, fmt.Sprintf("release policy %s: allow is %v, not a boolean", p.ID, obj["allow"]))
	}
	if raw, present := obj["reasons"]; present {
		var bad []string
		d.Reasons, bad = policy.Reasons("release policy "+p.ID, raw)
		problems = append(problems, bad...)
	}
	for k := range obj {
		if k != "allow" && k != "reasons" {
			problems = append(problems, fmt.Sprintf("release policy %s: unknown result field %q", p.ID, k))
		}
	}
	switch {
	case len(problems) > 0:
		d.Reasons = append(d.Reasons, problems...)
	case allow && len(d.Reasons) > 0:
		d.Reasons = append(d.Reasons, fmt.Sprintf("release policy %s: allow with reasons is a denial", p.ID))
	case allow:
		d.Allow = true
	case len(d.Reasons) == 0:
		d.Reasons = []string{fmt.Sprintf("release policy %s denied without a reason", p.ID)}
	}
	return d
}

// policyCache keeps compiled policies by digest and key version, so that a
// release compiles its policy once per replica.
type policyCache struct {
	mu sync.Mutex
	m  map[string]*Policy
}

func (c *policyCache) get(ctx context.Context, src []byte, key KeyParams) (*Policy, error) {
	id := PolicyDigest(src) + "\x00" + key.Name + "\x00" + strconv.Itoa(key.Version) + "\x00" + key.Origin
	c.mu.Lock()
	p, ok := c.m[id]
	c.mu.Unlock()
	if ok {
		return p, nil
	}
	p, err := compile(ctx, src, key)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]*Policy{}
	}
	if len(c.m) >= cacheSize {
		for k := range c.m { // evict one at random
			delete(c.m, k)
			break
		}
	}
	c.m[id] = p
	return p, nil
}
