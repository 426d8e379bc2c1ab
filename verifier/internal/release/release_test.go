package release

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"database/sql"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwe"
	"github.com/lestrrat-go/jwx/v3/jwk"

	"github.com/confidant-cvm/confidant/policies"
	"github.com/confidant-cvm/confidant/shared/keywrap"
	"github.com/confidant-cvm/confidant/verifier/internal/seal"
	"github.com/confidant-cvm/confidant/verifier/internal/store"
)

var t0 = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

const allowAll = `package test.allow_all
result := {"allow": true, "reasons": []}`

type fixture struct {
	svc    *Service
	st     *store.SQLite
	dbPath string
	rsa    *rsa.PrivateKey
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	path := filepath.Join(t.TempDir(), "db")
	st, err := store.OpenSQLite(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	sealer, err := seal.New(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		t.Fatal(err)
	}
	svc, err := New(context.Background(), Config{Store: st, Sealer: sealer, DefaultPolicy: policies.DefaultRelease(),
		Now: func() time.Time { return t0 }})
	if err != nil {
		t.Fatal(err)
	}
	priv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{svc: svc, st: st, dbPath: path, rsa: priv}
}

// claims returns token claims that the default policy allows, carrying pub
// as the runtime key.
func claims(t testing.TB, pub crypto.PublicKey) map[string]any {
	t.Helper()
	var keys []any
	if pub != nil {
		k, err := jwk.Import(pub)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(k)
		var m map[string]any
		json.Unmarshal(b, &m)
		keys = append(keys, m)
	}
	return map[string]any{
		"sub": "sev-snp:abcd", "status": "affirming", "dbgstat": json.Number("3"), "hwmodel": "AMD SEV-SNP Milan",
		"tee":     map[string]any{"kind": "sev-snp", "simulated": false},
		"runtime": map[string]any{"keys": map[string]any{"keys": keys}},
	}
}

func (f *fixture) unwrap(t testing.TB, jweBytes []byte) []byte {
	t.Helper()
	b, err := keywrap.Unwrap(jweBytes, keywrap.OAEPDecrypterFunc(func(ct []byte) ([]byte, error) {
		return rsa.DecryptOAEP(sha256.New(), nil, f.rsa, ct, nil)
	}))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestCreateAndRelease(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	info, key, err := f.svc.Create(ctx, "os-disk", nil, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(key) != GeneratedKeySize || info.Origin != store.OriginPlatform || len(info.Versions) != 1 ||
		info.PolicySHA256 != PolicyDigest(policies.DefaultRelease()) {
		t.Fatalf("created %+v (%d key bytes)", info, len(key))
	}
	res, err := f.svc.Release(ctx, Request{Name: "os-disk", Claims: claims(t, &f.rsa.PublicKey)})
	if err != nil {
		t.Fatal(err)
	}
	if res.Version != 1 || res.PolicyID != "confidant.release.default_policy" || !bytes.Equal(f.unwrap(t, res.JWE), key) {
		t.Fatalf("release: %+v", res)
	}
	// Without return_key the material is not handed out.
	if _, k, err := f.svc.Create(ctx, "other", nil, false); err != nil || k != nil {
		t.Fatalf("create without return: %v, %v", k, err)
	}
}

func TestReleaseToECRuntimeKey(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	_, key, err := f.svc.Create(ctx, "k", nil, true)
	if err != nil {
		t.Fatal(err)
	}
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	res, err := f.svc.Release(ctx, Request{Name: "k", Claims: claims(t, &ec.PublicKey)})
	if err != nil {
		t.Fatal(err)
	}
	ecdh, err := ec.ECDH()
	if err != nil {
		t.Fatal(err)
	}
	plain, err := jwe.Decrypt(res.JWE, jwe.WithKey(jwa.ECDH_ES_A256KW(), ecdh))
	if err != nil || !bytes.Equal(plain, key) {
		t.Fatalf("EC unwrap: %v", err)
	}
}

func TestRotationKeepsOldVersions(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	_, k1, err := f.svc.Create(ctx, "disk", nil, true)
	if err != nil {
		t.Fatal(err)
	}
	info, v, k2, err := f.svc.Rotate(ctx, "disk", nil, true)
	if err != nil || v != 2 || len(info.Versions) != 2 || bytes.Equal(k1, k2) {
		t.Fatalf("rotate: %+v %d, %v", info, v, err)
	}
	c := claims(t, &f.rsa.PublicKey)
	for version, want := range map[int][]byte{0: k2, 1: k1, 2: k2} {
		res, err := f.svc.Release(ctx, Request{Name: "disk", Version: version, Claims: c})
		if err != nil {
			t.Fatalf("version %d: %v", version, err)
		}
		if !bytes.Equal(f.unwrap(t, res.JWE), want) {
			t.Fatalf("version %d released the wrong key", version)
		}
	}
	if err := f.svc.Delete(ctx, "disk", 1); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.Release(ctx, Request{Name: "disk", Version: 1, Claims: c}); !errors.Is(err, ErrKeyUnknown) {
		t.Fatalf("deleted version: %v", err)
	}
	if err := f.svc.Delete(ctx, "disk", 2); !errors.Is(err, ErrConflict) {
		t.Fatalf("deleting the only version: %v", err)
	}
	if err := f.svc.Delete(ctx, "disk", 0); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.Release(ctx, Request{Name: "disk", Claims: c}); !errors.Is(err, ErrKeyUnknown) {
		t.Fatalf("deleted key: %v", err)
	}
}

func TestImport(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	material := bytes.Repeat([]byte{0x42}, 32)
	info, err := f.svc.Import(ctx, "customer", material, []byte(allowAll))
	if err != nil || info.Origin != store.OriginCustomer || info.PolicySHA256 != PolicyDigest([]byte(allowAll)) {
		t.Fatalf("import: %+v, %v", info, err)
	}
	res, err := f.svc.Release(ctx, Request{Name: "customer", Claims: claims(t, &f.rsa.PublicKey)})
	if err != nil || !bytes.Equal(f.unwrap(t, res.JWE), material) {
		t.Fatalf("release: %v", err)
	}
	next := bytes.Repeat([]byte{0x43}, 48)
	if _, v, k, err := f.svc.Rotate(ctx, "customer", next, false); err != nil || v != 2 || k != nil {
		t.Fatalf("rotate customer key: %d %v", v, err)
	}
	res, err = f.svc.Release(ctx, Request{Name: "customer", Claims: claims(t, &f.rsa.PublicKey)})
	if err != nil || !bytes.Equal(f.unwrap(t, res.JWE), next) {
		t.Fatalf("release after rotation: %v", err)
	}
}

func TestAdminErrors(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	if _, _, err := f.svc.Create(ctx, "platform", nil, false); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.Import(ctx, "customer", make([]byte, 32), nil); err != nil {
		t.Fatal(err)
	}
	tests := map[string]struct {
		op      func() error
		wantErr error
	}{
		"bad name":              {op: func() error { _, _, err := f.svc.Create(ctx, "../x", nil, false); return err }, wantErr: ErrInvalid},
		"empty name":            {op: func() error { _, _, err := f.svc.Create(ctx, "", nil, false); return err }, wantErr: ErrInvalid},
		"exists":                {op: func() error { _, _, err := f.svc.Create(ctx, "platform", nil, false); return err }, wantErr: ErrKeyExists},
		"import exists":         {op: func() error { _, err := f.svc.Import(ctx, "platform", make([]byte, 32), nil); return err }, wantErr: ErrKeyExists},
		"short material":        {op: func() error { _, err := f.svc.Import(ctx, "x", make([]byte, 15), nil); return err }, wantErr: ErrInvalid},
		"long material":         {op: func() error { _, err := f.svc.Import(ctx, "x", make([]byte, 1025), nil); return err }, wantErr: ErrInvalid},
		"policy does not parse": {op: func() error { _, _, err := f.svc.Create(ctx, "x", []byte("package"), false); return err }, wantErr: ErrInvalidPolicy},
		"policy without result": {op: func() error {
			_, _, err := f.svc.Create(ctx, "x", []byte("package p\nallow := true"), false)
			return err
		}, wantErr: ErrInvalidPolicy},
		"policy unsafe": {op: func() error {
			_, _, err := f.svc.Create(ctx, "x", []byte("package p\nresult := {\"allow\": y}"), false)
			return err
		}, wantErr: ErrInvalidPolicy},
		"rotate unknown":                {op: func() error { _, _, _, err := f.svc.Rotate(ctx, "none", nil, false); return err }, wantErr: ErrKeyUnknown},
		"rotate platform with material": {op: func() error { _, _, _, err := f.svc.Rotate(ctx, "platform", make([]byte, 32), false); return err }, wantErr: ErrInvalid},
		"rotate customer without":       {op: func() error { _, _, _, err := f.svc.Rotate(ctx, "customer", nil, false); return err }, wantErr: ErrInvalid},
		"rotate customer return key":    {op: func() error { _, _, _, err := f.svc.Rotate(ctx, "customer", make([]byte, 32), true); return err }, wantErr: ErrInvalid},
		"delete unknown":                {op: func() error { return f.svc.Delete(ctx, "none", 0) }, wantErr: ErrKeyUnknown},
		"delete negative":               {op: func() error { return f.svc.Delete(ctx, "platform", -1) }, wantErr: ErrInvalid},
		"set policy unknown":            {op: func() error { _, err := f.svc.SetPolicy(ctx, "none", []byte(allowAll)); return err }, wantErr: ErrKeyUnknown},
		"set bad policy":                {op: func() error { _, err := f.svc.SetPolicy(ctx, "platform", []byte("x")); return err }, wantErr: ErrInvalidPolicy},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			if err := tt.op(); !errors.Is(err, tt.wantErr) {
				t.Fatalf("got %v, want %v", err, tt.wantErr)
			}
		})
	}
	list, err := f.svc.List(ctx)
	if err != nil || len(list) != 2 {
		t.Fatalf("failed operations changed the keys: %+v, %v", list, err)
	}
}

func TestReleaseRefusals(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	if _, _, err := f.svc.Create(ctx, "disk", nil, false); err != nil {
		t.Fatal(err)
	}
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	good := claims(t, &f.rsa.PublicKey)
	with := func(edit func(c map[string]any)) map[string]any {
		c := claims(t, &f.rsa.PublicKey)
		edit(c)
		return c
	}
	oct, _ := jwk.Import([]byte("0123456789abcdef0123456789abcdef"))
	octJSON, _ := json.Marshal(oct)
	var octMap map[string]any
	json.Unmarshal(octJSON, &octMap)
	privJSON, _ := jwk.Import(f.rsa)
	pb, _ := json.Marshal(privJSON)
	var privMap map[string]any
	json.Unmarshal(pb, &privMap)

	tests := map[string]struct {
		req        Request
		wantErr    error
		wantReason string
	}{
		"unknown key":      {req: Request{Name: "none", Claims: good}, wantErr: ErrKeyUnknown},
		"invalid name":     {req: Request{Name: "../etc", Claims: good}, wantErr: ErrInvalidName},
		"unknown version":  {req: Request{Name: "disk", Version: 7, Claims: good}, wantErr: ErrKeyUnknown},
		"negative version": {req: Request{Name: "disk", Version: -1, Claims: good}, wantErr: ErrInvalid},
		"no runtime key":   {req: Request{Name: "disk", Claims: claims(t, nil)}, wantErr: ErrNoRuntimeKey},
		"no runtime claim": {req: Request{Name: "disk", Claims: with(func(c map[string]any) { delete(c, "runtime") })}, wantErr: ErrNoRuntimeKey},
		"runtime key garbage": {req: Request{Name: "disk", Claims: with(func(c map[string]any) {
			c["runtime"] = map[string]any{"keys": map[string]any{"keys": []any{map[string]any{"kty": "nope"}}}}
		})}, wantErr: ErrNoRuntimeKey},
		"RSA-1024 runtime key": {req: Request{Name: "disk", Claims: claims(t, &small.PublicKey)}, wantErr: ErrNoRuntimeKey},
		"symmetric runtime key": {req: Request{Name: "disk", Claims: with(func(c map[string]any) {
			c["runtime"] = map[string]any{"keys": map[string]any{"keys": []any{octMap}}}
		})}, wantErr: ErrNoRuntimeKey},
		"private runtime key": {req: Request{Name: "disk", Claims: with(func(c map[string]any) {
			c["runtime"] = map[string]any{"keys": map[string]any{"keys": []any{privMap}}}
		})}, wantErr: ErrNoRuntimeKey},
		"policy: warning": {req: Request{Name: "disk", Claims: with(func(c map[string]any) { c["status"] = "warning" })},
			wantErr: ErrDenied, wantReason: "token status is warning, want affirming"},
		"policy: simulated": {req: Request{Name: "disk", Claims: with(func(c map[string]any) {
			c["tee"] = map[string]any{"kind": "sim-sev-snp", "simulated": true}
		})}, wantErr: ErrDenied, wantReason: "evidence came from the simulated TEE"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			res, err := f.svc.Release(ctx, tt.req)
			if !errors.Is(err, tt.wantErr) || res != nil {
				t.Fatalf("got %v, %v; want %v", res, err, tt.wantErr)
			}
			if tt.wantReason != "" {
				var de *DeniedError
				if !errors.As(err, &de) || !contains(de.Reasons, tt.wantReason) || de.PolicyID != "confidant.release.default_policy" {
					t.Fatalf("denial %+v lacks %q", de, tt.wantReason)
				}
			}
		})
	}
}

func contains(reasons []string, s string) bool {
	for _, r := range reasons {
		if strings.Contains(r, s) {
			return true
		}
	}
	return false
}

// TestSealedBlobBoundToNameAndVersion moves sealed material between
// versions and keys in the database: it no longer opens.
func TestSealedBlobBoundToNameAndVersion(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	for _, name := range []string{"a", "b"} {
		if _, err := f.svc.Import(ctx, name, bytes.Repeat([]byte(name), 32), []byte(allowAll)); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, _, err := f.svc.Rotate(ctx, "a", bytes.Repeat([]byte("c"), 32), false); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", f.dbPath)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	c := claims(t, &f.rsa.PublicKey)
	for name, stmt := range map[string]string{
		"version swapped": "UPDATE release_key_versions SET sealed = (SELECT sealed FROM release_key_versions WHERE name = 'a' AND version = 1) WHERE name = 'a' AND version = 2",
		"key swapped":     "UPDATE release_key_versions SET sealed = (SELECT sealed FROM release_key_versions WHERE name = 'a' AND version = 1) WHERE name = 'b'",
	} {
		if _, err := db.Exec(stmt); err != nil {
			t.Fatal(err)
		}
		target := map[string]string{"version swapped": "a", "key swapped": "b"}[name]
		if res, err := f.svc.Release(ctx, Request{Name: target, Claims: c}); !errors.Is(err, seal.ErrOpen) {
			t.Fatalf("%s: released %v (%v)", name, res, err)
		}
	}
}

func TestPolicyDecisionFailsClosed(t *testing.T) {
	ctx := context.Background()
	tests := map[string]struct {
		src        string
		wantAllow  bool
		wantReason string
		wantErr    error
	}{
		"allow":              {src: `result := {"allow": true}`, wantAllow: true},
		"allow, empty list":  {src: `result := {"allow": true, "reasons": []}`, wantAllow: true},
		"deny with reasons":  {src: `result := {"allow": false, "reasons": ["a", "b"]}`, wantReason: "b"},
		"deny without":       {src: `result := {"allow": false}`, wantReason: "denied without a reason"},
		"undefined":          {src: `result := {"allow": true} if input.never`, wantReason: "produced no result"},
		"not an object":      {src: `result := true`, wantReason: "result is not an object"},
		"allow not boolean":  {src: `result := {"allow": "yes"}`, wantReason: "not a boolean"},
		"allow missing":      {src: `result := {"reasons": []}`, wantReason: "not a boolean"},
		"allow with reasons": {src: `result := {"allow": true, "reasons": ["x"]}`, wantReason: "allow with reasons is a denial"},
		"unknown field":      {src: `result := {"allow": true, "claims": {}}`, wantReason: `unknown result field "claims"`},
		"bad reason":         {src: `result := {"allow": false, "reasons": [1]}`, wantReason: "is not a string"},
		"reasons not array":  {src: `result := {"allow": false, "reasons": "x"}`, wantReason: "not an array"},
		"data.key visible":   {src: `result := {"allow": data.key.name == "k"}`, wantAllow: true},
		"builtin error":      {src: `result := {"allow": to_number("x") > 1}`, wantErr: ErrPolicyEvaluation},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			p, err := compile(ctx, []byte("package test.p\n"+tt.src), KeyParams{Name: "k", Version: 1, Origin: "platform"})
			if err != nil {
				t.Fatal(err)
			}
			d, err := p.Evaluate(ctx, map[string]any{"status": "affirming"}, time.Unix(0, 0), 0)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("got %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if d.Allow != tt.wantAllow || (tt.wantReason != "" && !contains(d.Reasons, tt.wantReason)) {
				t.Fatalf("decision %+v", d)
			}
			if !d.Allow && len(d.Reasons) == 0 {
				t.Fatal("denial without reasons")
			}
		})
	}
}

func TestPolicyCache(t *testing.T) {
	var c policyCache
	ctx := context.Background()
	src := []byte("package p\nresult := {\"allow\": true}")
	a, err := c.get(ctx, src, KeyParams{Name: "k", Version: 1})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := c.get(ctx, src, KeyParams{Name: "k", Version: 1})
	other, _ := c.get(ctx, src, KeyParams{Name: "k", Version: 2})
	if a != b || a == other {
		t.Fatal("cache keyed wrongly")
	}
	for i := range cacheSize + 10 {
		if _, err := c.get(ctx, src, KeyParams{Name: "k", Version: i + 10}); err != nil {
			t.Fatal(err)
		}
	}
	if len(c.m) > cacheSize {
		t.Fatalf("cache grew to %d", len(c.m))
	}
}

func TestNewRequiresDefaultPolicy(t *testing.T) {
	if _, err := New(context.Background(), Config{}); err == nil {
		t.Fatal("accepted an empty config")
	}
}

// FuzzRuntimeKey feeds arbitrary runtime key JSON to the release path's
// runtime key handling: it must never panic and never wrap to anything but
// an RSA (2048 bits or more) or EC public key.
func FuzzRuntimeKey(f *testing.F) {
	priv, _ := rsa.GenerateKey(rand.Reader, 2048)
	k, _ := jwk.Import(&priv.PublicKey)
	b, _ := json.Marshal(k)
	f.Add(b)
	f.Add([]byte(`{"kty":"oct","k":"AAAA"}`))
	f.Add([]byte(`{"kty":"EC","crv":"P-256","x":"AA","y":"AA"}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		var v any
		if json.Unmarshal(raw, &v) != nil {
			return
		}
		c := map[string]any{"runtime": map[string]any{"keys": map[string]any{"keys": []any{v}}}}
		rk, err := RuntimeKey(c)
		if err != nil {
			if !errors.Is(err, ErrNoRuntimeKey) {
				t.Fatalf("error %v does not match ErrNoRuntimeKey", err)
			}
			return
		}
		if _, err := keywrap.Wrap(make([]byte, 32), rk); err == nil {
			var raw any
			if err := jwk.Export(rk, &raw); err != nil {
				t.Fatal(err)
			}
			switch pk := raw.(type) {
			case *rsa.PublicKey:
				if pk.N.BitLen() < 2048 {
					t.Fatalf("wrapped to a %d-bit RSA key", pk.N.BitLen())
				}
			case *ecdsa.PublicKey:
			default:
				t.Fatalf("wrapped to %T", raw)
			}
		}
	})
}
