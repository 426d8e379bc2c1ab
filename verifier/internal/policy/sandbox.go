package policy

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
)

// The sandbox every policy runs in, appraisal and release alike, whether it
// comes from a file, from the admin API or from `confidant-verifier
// appraise`: it is compiled against Capabilities (an explicit allow-list of
// pure, deterministic built-ins, no network), in strict mode, with print
// statements compiled out, over a store holding only what the verifier put
// there; and each evaluation is bounded by a timeout. A policy sees the
// time only as input.now, which the verifier sets.

var (
	// ErrNotPure means a policy calls a built-in outside the sandbox.
	ErrNotPure = errors.New("policies must be pure and deterministic")
	// ErrTimeout means an evaluation ran past its time limit and was
	// stopped. It is a failure, never an allow.
	ErrTimeout = errors.New("policy evaluation exceeded its time limit")
)

// DefaultTimeout bounds one evaluation of a policy when no other limit is
// configured. The shipped policies evaluate in about a millisecond
// (BenchmarkEvaluate, on a busy 2-core machine); the margin is for a loaded
// machine, not for the policy.
const DefaultTimeout = 2 * time.Second

// allowedBuiltins returns the allow-list of the sandbox.
//
// An explicit allow-list, not OPA's defaults minus a deny-list: every OPA
// release adds built-ins, and a deny-list would hand each new one (a new
// network or clock function, say) to policies on the next dependency bump
// without review. Here a new built-in stays unavailable until someone adds
// it below; TestAllowedBuiltinsExist fails when OPA drops one.
//
// Left out on purpose (a policy using them fails to load, naming them):
//   - I/O: http.send (network), net.lookup_ip_addr (DNS), opa.runtime
//     (the process environment and configuration), json.match_schema and
//     json.verify_schema (they fetch remote $refs), providers.aws.sign_req;
//   - the clock: time.now_ns, io.jwt.decode_verify and
//     crypto.x509.parse_and_verify_certificates[_with_options] (they read
//     the clock unless told a time);
//   - randomness: rand.intn, uuid.rfc4122, io.jwt.encode_sign[_raw];
//   - output: print, trace (and internal.print);
//   - not needed to decide over evidence or claims: rego.* (parse_module,
//     metadata), graphql.*, strings.render_template, private key parsers,
//     internal.test_case, and every deprecated built-in.
//
// numbers.range, numbers.range_step and net.cidr_expand stay: their output
// grows with a number, not with data, but they check for cancellation as
// they go, so the timeout stops them (measured: numbers.range(1, 1e9)
// stopped at 2 s with a peak heap under 100 MB).
//
// The time.* functions below are pure: they convert the nanoseconds they
// are given (for example input.now). Give them UTC, never "Local".
func allowedBuiltins() []string {
	return []string{
		// Operators, comparison, membership, template strings.
		"assign", "eq", "equal", "neq", "gt", "gte", "lt", "lte",
		"plus", "minus", "mul", "div", "rem", "and", "or",
		"internal.member_2", "internal.member_3", "internal.template_string",
		// Numbers and aggregates.
		"abs", "ceil", "floor", "round", "to_number", "format_int",
		"numbers.range", "numbers.range_step",
		"count", "sum", "product", "max", "min", "sort",
		// Arrays, sets, objects.
		"array.concat", "array.flatten", "array.reverse", "array.slice",
		"intersection", "union",
		"object.filter", "object.get", "object.keys", "object.remove", "object.subset",
		"object.union", "object.union_n",
		"json.filter", "json.remove", "json.patch", "walk",
		"graph.reachable", "graph.reachable_paths",
		// Strings, regular expressions, globs.
		"concat", "contains", "endswith", "startswith", "indexof", "indexof_n",
		"lower", "upper", "replace", "split", "sprintf", "substring",
		"trim", "trim_left", "trim_prefix", "trim_right", "trim_space", "trim_suffix",
		"strings.any_prefix_match", "strings.any_suffix_match", "strings.count",
		"strings.replace_n", "strings.reverse",
		"regex.match", "regex.is_valid", "regex.split", "regex.find_n",
		"regex.find_all_string_submatch_n", "regex.replace", "regex.globs_match",
		"regex.template_match", "glob.match", "glob.quote_meta",
		// Types.
		"is_array", "is_boolean", "is_null", "is_number", "is_object", "is_set",
		"is_string", "type_name",
		// Encodings.
		"base64.encode", "base64.decode", "base64.is_valid",
		"base64url.encode", "base64url.encode_no_pad", "base64url.decode",
		"hex.encode", "hex.decode",
		"json.marshal", "json.marshal_with_options", "json.unmarshal", "json.is_valid",
		"yaml.marshal", "yaml.unmarshal", "yaml.is_valid",
		"urlquery.encode", "urlquery.decode", "urlquery.encode_object", "urlquery.decode_object",
		"bits.and", "bits.or", "bits.xor", "bits.negate", "bits.lsh", "bits.rsh",
		// Digests, MACs and signatures over what the policy is given.
		"crypto.sha256", "crypto.sha1", "crypto.md5",
		"crypto.hmac.sha256", "crypto.hmac.sha512", "crypto.hmac.sha1", "crypto.hmac.md5",
		"crypto.hmac.equal",
		"crypto.x509.parse_certificates", "crypto.x509.parse_certificate_request",
		"io.jwt.decode",
		"io.jwt.verify_es256", "io.jwt.verify_es384", "io.jwt.verify_es512", "io.jwt.verify_eddsa",
		"io.jwt.verify_ps256", "io.jwt.verify_ps384", "io.jwt.verify_ps512",
		"io.jwt.verify_rs256", "io.jwt.verify_rs384", "io.jwt.verify_rs512",
		"io.jwt.verify_hs256", "io.jwt.verify_hs384", "io.jwt.verify_hs512",
		// Time, from the nanoseconds given (input.now), never the clock.
		"time.parse_ns", "time.parse_rfc3339_ns", "time.parse_duration_ns",
		"time.add_date", "time.diff", "time.date", "time.clock", "time.weekday", "time.format",
		// Networks as data, versions, units, UUIDs as data.
		"net.cidr_contains", "net.cidr_contains_matches", "net.cidr_intersects",
		"net.cidr_is_valid", "net.cidr_merge", "net.cidr_expand",
		"semver.compare", "semver.is_valid", "units.parse", "units.parse_bytes", "uuid.parse",
	}
}

// Capabilities returns the sandbox's OPA capabilities: this OPA's language
// features and keywords, the allowed built-ins, and no network host (for
// remote JSON schemas). Each call returns a fresh value.
func Capabilities() *ast.Capabilities {
	base := ast.CapabilitiesForThisVersion()
	caps := &ast.Capabilities{
		FutureKeywords: base.FutureKeywords,
		Features:       base.Features,
		AllowNet:       []string{}, // empty, not nil: no host at all
	}
	for _, name := range allowedBuiltins() {
		if b, ok := ast.BuiltinMap[name]; ok {
			caps.Builtins = append(caps.Builtins, b)
		}
	}
	return caps
}

// CheckBuiltins reports every OPA built-in mod uses that the sandbox does
// not allow, each once, naming it; the errors wrap ErrNotPure. The compiler
// would refuse them too (they are not in Capabilities), but as "undefined
// function", which does not tell a policy author why.
func CheckBuiltins(mod *ast.Module) error {
	allowed := map[string]bool{}
	for _, n := range allowedBuiltins() {
		allowed[n] = true
	}
	var (
		errs []error
		seen = map[string]bool{}
	)
	check := func(name string, loc *ast.Location) {
		if _, builtin := ast.BuiltinMap[name]; !builtin || allowed[name] || seen[name] {
			return
		}
		seen[name] = true
		where := ""
		if loc != nil {
			where = fmt.Sprintf("line %d: ", loc.Row)
		}
		errs = append(errs, fmt.Errorf("%spolicy uses built-in %q, which is not allowed: %w", where, name, ErrNotPure))
	}
	ast.NewGenericVisitor(func(x any) bool {
		switch v := x.(type) {
		case *ast.Expr:
			if v.IsCall() {
				check(v.Operator().String(), v.Location)
			}
			for _, w := range v.With {
				check(w.Target.String(), w.Location)
			}
		case ast.Call:
			if len(v) > 0 {
				check(v[0].String(), v[0].Location)
			}
		}
		return false
	}).Walk(mod)
	return errors.Join(errs...)
}

// regoOptions are the sandbox's options for rego.New; the caller adds the
// query, the module and the store.
func regoOptions() []func(*rego.Rego) {
	return []func(*rego.Rego){
		rego.Capabilities(Capabilities()),
		rego.Strict(true),
		rego.StrictBuiltinErrors(true),
		rego.EnablePrintStatements(false),
		rego.SetRegoVersion(ast.RegoV1),
	}
}

// Prepare compiles mod for query in the sandbox, over store-provided data
// (opts adds rego.Store and anything else). It refuses a module that uses
// a built-in outside the sandbox, naming it (ErrNotPure).
func Prepare(ctx context.Context, mod *ast.Module, query string, opts ...func(*rego.Rego)) (rego.PreparedEvalQuery, error) {
	if err := CheckBuiltins(mod); err != nil {
		return rego.PreparedEvalQuery{}, err
	}
	all := slices.Concat(regoOptions(), []func(*rego.Rego){rego.Query(query), rego.ParsedModule(mod)}, opts)
	return rego.New(all...).PrepareForEval(ctx)
}

// Eval evaluates q over input, stopped after timeout (zero or less:
// DefaultTimeout). Running past it is ErrTimeout, even when a result came
// back just after the deadline: the bound is on the whole evaluation. A
// ctx that ended first is ctx's error.
func Eval(ctx context.Context, q rego.PreparedEvalQuery, timeout time.Duration, input any) (rego.ResultSet, error) {
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	tctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	opts := []rego.EvalOption{}
	if input != nil {
		opts = append(opts, rego.EvalInput(input))
	}
	rs, err := q.Eval(tctx, opts...)
	deadline, _ := tctx.Deadline()
	switch {
	case ctx.Err() != nil:
		return nil, errors.Join(ctx.Err(), err)
	case tctx.Err() != nil || !time.Now().Before(deadline):
		return nil, fmt.Errorf("stopped after %v: %w", timeout, ErrTimeout)
	case err != nil:
		return nil, err
	}
	return rs, nil
}
