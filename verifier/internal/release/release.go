// Package release keeps the keys the verifier releases to attested guests
// and releases them.
//
// A key has a name, an origin (platform-managed: the verifier generated
// it; customer-managed: an administrator imported it), a release policy
// (Rego over the claims of the guest's token) and versions. Rotation adds a
// version; older versions stay releasable until they are deleted, so that
// disks can be re-keyed. Key material is stored only sealed (AES-256-GCM
// under a key-encryption key that never enters the store; a Sealer, which
// an HSM or KMS can implement) with the key name and version as associated
// data, so that a sealed blob moved to another key or version does not
// open.
//
// Release takes the verified claims of a token, evaluates the key's
// release policy over them and returns the key as a compact JWE encrypted
// to the runtime key in the token (shared/keywrap: RSA-OAEP-256 + A256GCM,
// or ECDH-ES+A256KW + A256GCM for an EC runtime key).
package release

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"

	"github.com/confidant-cvm/confidant/shared/api"
	"github.com/confidant-cvm/confidant/shared/keywrap"
	"github.com/confidant-cvm/confidant/shared/termsafe"
	"github.com/confidant-cvm/confidant/verifier/internal/store"
)

// Sizes of key material.
const (
	// GeneratedKeySize is the size of a platform-managed key.
	GeneratedKeySize = 32
	// MinKeySize and MaxKeySize bound an imported key.
	MinKeySize = 16
	MaxKeySize = 1024
)

// Sentinel errors; the API maps each to a status and an error code.
var (
	// ErrKeyUnknown: no key (or no such version) of that name.
	ErrKeyUnknown = errors.New("key unknown")
	// ErrKeyExists: a key of that name exists already.
	ErrKeyExists = errors.New("key exists")
	// ErrConflict: the change conflicts with the key's state (deleting its
	// only version).
	ErrConflict = errors.New("conflicts with the key's state")
	// ErrInvalid: a malformed name, version or key material.
	ErrInvalid = errors.New("invalid request")
	// ErrInvalidName: a key name that breaks the naming rule (CheckName).
	// It matches ErrInvalid too.
	ErrInvalidName = fmt.Errorf("%w: invalid key name", ErrInvalid)
	// ErrInvalidPolicy: the release policy does not compile.
	ErrInvalidPolicy = errors.New("invalid release policy")
	// ErrNoRuntimeKey: the token carries no runtime key the key can be
	// wrapped to (none, or of a type that is refused).
	ErrNoRuntimeKey = errors.New("no usable runtime key")
	// ErrDenied: the release policy denied; the error is a *DeniedError.
	ErrDenied = errors.New("release denied")
	// ErrPolicyEvaluation: the release policy failed to evaluate.
	ErrPolicyEvaluation = errors.New("release policy evaluation failed")
)

// DeniedError lists every reason a release policy denied.
type DeniedError struct {
	Reasons []string
	// Policy names the policy that denied.
	PolicyID, PolicySHA256 string
	// Version is the key version that was asked for.
	Version int
}

func (e *DeniedError) Error() string {
	return fmt.Sprintf("release denied by policy %s: %v", e.PolicyID, e.Reasons)
}

// Unwrap makes a *DeniedError match ErrDenied.
func (e *DeniedError) Unwrap() error { return ErrDenied }

// Sealer seals key material at rest (seal.Sealer implements it; an HSM or
// KMS client can stand in).
type Sealer interface {
	Seal(plaintext, aad []byte) ([]byte, error)
	Open(sealed, aad []byte) ([]byte, error)
	// ID names the key-encryption key (not secret).
	ID() string
}

// Store holds the keys. store.Store implements it.
type Store interface {
	CreateReleaseKey(ctx context.Context, k store.ReleaseKey, first store.ReleaseKeyVersion) error
	RotateReleaseKey(ctx context.Context, name string, at time.Time, seal func(version int) (store.ReleaseKeyVersion, error)) (int, error)
	DeleteReleaseKey(ctx context.Context, name string, version int) error
	SetReleasePolicy(ctx context.Context, name string, policy []byte, sha256 string, at time.Time) error
	ReleaseKey(ctx context.Context, name string, version int) (store.ReleaseKey, store.ReleaseKeyVersion, error)
	ReleaseKeyInfo(ctx context.Context, name string) (store.ReleaseKey, error)
	ReleaseKeys(ctx context.Context) ([]store.ReleaseKey, error)
}

// Config configures a Service.
type Config struct {
	// Store holds the keys. Required.
	Store Store
	// Sealer seals key material. Required.
	Sealer Sealer
	// DefaultPolicy is the release policy of keys created without one.
	// Required; it must compile.
	DefaultPolicy []byte
	// Now is the clock (and a release policy's input.now); nil means
	// time.Now.
	Now func() time.Time
	// PolicyTimeout bounds one evaluation of a release policy; zero means
	// policy.DefaultTimeout.
	PolicyTimeout time.Duration
	// Rand generates platform-managed keys; nil means crypto/rand.
	Rand io.Reader
}

// Service manages and releases keys.
type Service struct {
	cfg   Config
	cache policyCache
}

// New returns a Service.
func New(ctx context.Context, cfg Config) (*Service, error) {
	var errs []error
	if cfg.Store == nil {
		errs = append(errs, errors.New("no key store"))
	}
	if cfg.Sealer == nil {
		errs = append(errs, errors.New("no sealer"))
	}
	if _, err := CheckPolicy(ctx, cfg.DefaultPolicy); err != nil {
		errs = append(errs, fmt.Errorf("default release policy: %w", err))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("configuring key release: %w", err)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}
	return &Service{cfg: cfg}, nil
}

// maxNameInError bounds the escaped name an ErrInvalidName quotes.
const maxNameInError = 160

// CheckName reports whether name is a valid key name (shared/api): 1 to 128 letters,
// digits, '.', '_' or '-', starting with a letter or digit. A name that
// passes is printable ASCII, safe to log and to record as it is; the error
// for one that does not (ErrInvalidName) quotes it escaped and bounded
// (termsafe.Clip).
func CheckName(name string) error {
	if !api.ValidKeyName(name) {
		return fmt.Errorf("%w \"%s\": want 1-128 of [A-Za-z0-9._-], starting with a letter or digit",
			ErrInvalidName, termsafe.Clip(name, maxNameInError))
	}
	return nil
}

// aad binds sealed material to its key name and version.
func aad(name string, version int) []byte {
	return []byte("confidant release key v1\x00" + name + "\x00" + strconv.Itoa(version))
}

func (s *Service) sealVersion(name string, version int, material []byte) (store.ReleaseKeyVersion, error) {
	sealed, err := s.cfg.Sealer.Seal(material, aad(name, version))
	if err != nil {
		return store.ReleaseKeyVersion{}, fmt.Errorf("sealing key %s version %d: %w", name, version, err)
	}
	return store.ReleaseKeyVersion{Version: version, Sealed: sealed, KEKID: s.cfg.Sealer.ID(), CreatedAt: s.cfg.Now().UTC()}, nil
}

func (s *Service) generate() ([]byte, error) {
	k := make([]byte, GeneratedKeySize)
	if _, err := io.ReadFull(s.cfg.Rand, k); err != nil {
		return nil, fmt.Errorf("generating key: %w", err)
	}
	return k, nil
}

func checkMaterial(material []byte) error {
	if len(material) < MinKeySize || len(material) > MaxKeySize {
		return fmt.Errorf("%w: key material is %d bytes, want %d to %d", ErrInvalid, len(material), MinKeySize, MaxKeySize)
	}
	return nil
}

// storeErr turns store outcomes into this package's sentinels.
func storeErr(err error) error {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return errors.Join(ErrKeyUnknown, err)
	case errors.Is(err, store.ErrConflict):
		return errors.Join(ErrConflict, err)
	}
	return err
}

// policyOrDefault checks a policy source (empty: the default).
func (s *Service) policyOrDefault(ctx context.Context, src []byte) ([]byte, error) {
	if len(src) == 0 {
		src = s.cfg.DefaultPolicy
	}
	if _, err := CheckPolicy(ctx, src); err != nil {
		return nil, err
	}
	return bytes.Clone(src), nil
}

// Create makes a platform-managed key: 32 random bytes. The key is
// returned only when returnKey is set (the image tool encrypts a disk with
// it); otherwise it never leaves the verifier except released to guests.
func (s *Service) Create(ctx context.Context, name string, policy []byte, returnKey bool) (store.ReleaseKey, []byte, error) {
	material, err := s.generate()
	if err != nil {
		return store.ReleaseKey{}, nil, err
	}
	defer clear(material)
	info, err := s.create(ctx, name, store.OriginPlatform, material, policy)
	if err != nil || !returnKey {
		return info, nil, err
	}
	return info, bytes.Clone(material), nil
}

// Import stores a customer-managed key (MinKeySize to MaxKeySize bytes).
func (s *Service) Import(ctx context.Context, name string, material, policy []byte) (store.ReleaseKey, error) {
	if err := checkMaterial(material); err != nil {
		return store.ReleaseKey{}, err
	}
	return s.create(ctx, name, store.OriginCustomer, material, policy)
}

func (s *Service) create(ctx context.Context, name, origin string, material, policy []byte) (store.ReleaseKey, error) {
	if err := CheckName(name); err != nil {
		return store.ReleaseKey{}, err
	}
	src, err := s.policyOrDefault(ctx, policy)
	if err != nil {
		return store.ReleaseKey{}, err
	}
	v, err := s.sealVersion(name, 1, material)
	if err != nil {
		return store.ReleaseKey{}, err
	}
	now := s.cfg.Now().UTC()
	k := store.ReleaseKey{Name: name, Origin: origin, Policy: src, PolicySHA256: PolicyDigest(src), CreatedAt: now, UpdatedAt: now}
	if err := s.cfg.Store.CreateReleaseKey(ctx, k, v); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return store.ReleaseKey{}, fmt.Errorf("creating key %s: %w", name, errors.Join(ErrKeyExists, err))
		}
		return store.ReleaseKey{}, fmt.Errorf("creating key %s: %w", name, err)
	}
	return s.Get(ctx, name)
}

// Rotate adds a version to the named key and makes it the latest. A
// platform-managed key gets 32 new random bytes (material must be nil; the
// new key is returned when returnKey is set); a customer-managed key needs
// the new material.
func (s *Service) Rotate(ctx context.Context, name string, material []byte, returnKey bool) (store.ReleaseKey, int, []byte, error) {
	info, err := s.Get(ctx, name)
	if err != nil {
		return store.ReleaseKey{}, 0, nil, err
	}
	switch {
	case info.Origin == store.OriginCustomer && material == nil:
		return store.ReleaseKey{}, 0, nil, fmt.Errorf("%w: key %s is customer-managed: rotating it needs the new key material", ErrInvalid, name)
	case info.Origin == store.OriginCustomer && returnKey:
		return store.ReleaseKey{}, 0, nil, fmt.Errorf("%w: key %s is customer-managed: its material is not returned", ErrInvalid, name)
	case info.Origin == store.OriginPlatform && material != nil:
		return store.ReleaseKey{}, 0, nil, fmt.Errorf("%w: key %s is platform-managed: the verifier generates its material", ErrInvalid, name)
	case material != nil:
		if err := checkMaterial(material); err != nil {
			return store.ReleaseKey{}, 0, nil, err
		}
	default:
		if material, err = s.generate(); err != nil {
			return store.ReleaseKey{}, 0, nil, err
		}
		defer clear(material)
	}
	version, err := s.cfg.Store.RotateReleaseKey(ctx, name, s.cfg.Now().UTC(), func(v int) (store.ReleaseKeyVersion, error) {
		return s.sealVersion(name, v, material)
	})
	if err != nil {
		return store.ReleaseKey{}, 0, nil, fmt.Errorf("rotating key %s: %w", name, storeErr(err))
	}
	info, err = s.Get(ctx, name)
	if err != nil {
		return store.ReleaseKey{}, 0, nil, err
	}
	if !returnKey {
		return info, version, nil, nil
	}
	return info, version, bytes.Clone(material), nil
}

// Delete deletes one version of the named key, or the whole key when
// version is 0.
func (s *Service) Delete(ctx context.Context, name string, version int) error {
	if err := CheckName(name); err != nil {
		return err
	}
	if version < 0 {
		return fmt.Errorf("%w: version %d", ErrInvalid, version)
	}
	if err := s.cfg.Store.DeleteReleaseKey(ctx, name, version); err != nil {
		return fmt.Errorf("deleting key %s: %w", name, storeErr(err))
	}
	return nil
}

// SetPolicy replaces the release policy of the named key (empty: the
// default policy).
func (s *Service) SetPolicy(ctx context.Context, name string, policy []byte) (store.ReleaseKey, error) {
	if err := CheckName(name); err != nil {
		return store.ReleaseKey{}, err
	}
	src, err := s.policyOrDefault(ctx, policy)
	if err != nil {
		return store.ReleaseKey{}, err
	}
	if err := s.cfg.Store.SetReleasePolicy(ctx, name, src, PolicyDigest(src), s.cfg.Now().UTC()); err != nil {
		return store.ReleaseKey{}, fmt.Errorf("setting the release policy of %s: %w", name, storeErr(err))
	}
	return s.Get(ctx, name)
}

// Get returns the named key's metadata (never its material).
func (s *Service) Get(ctx context.Context, name string) (store.ReleaseKey, error) {
	if err := CheckName(name); err != nil {
		return store.ReleaseKey{}, err
	}
	k, err := s.cfg.Store.ReleaseKeyInfo(ctx, name)
	if err != nil {
		return store.ReleaseKey{}, fmt.Errorf("loading key %s: %w", name, storeErr(err))
	}
	return k, nil
}

// List returns every key's metadata.
func (s *Service) List(ctx context.Context) ([]store.ReleaseKey, error) {
	return s.cfg.Store.ReleaseKeys(ctx)
}

// Request asks for a key.
type Request struct {
	// Name and Version (0: the latest) of the key.
	Name    string
	Version int
	// Claims are the verified claims of the guest's token.
	Claims map[string]any
}

// Result is a released key.
type Result struct {
	Name    string
	Version int
	// JWE is the key as a compact JWE to the token's runtime key.
	JWE []byte
	// PolicyID and PolicySHA256 name the release policy that allowed it.
	PolicyID, PolicySHA256 string
}

// Release checks the request against the key's release policy and returns
// the key wrapped to the token's runtime key. Failures: ErrInvalid (bad
// version), ErrNoRuntimeKey, ErrKeyUnknown (with ErrInvalidName too for a
// name that breaks the rule: the store is not asked for it), a
// *DeniedError (ErrDenied), ErrPolicyEvaluation, store.ErrUnavailable.
func (s *Service) Release(ctx context.Context, req Request) (*Result, error) {
	if req.Version < 0 {
		return nil, fmt.Errorf("%w: version %d", ErrInvalid, req.Version)
	}
	rk, err := RuntimeKey(req.Claims)
	if err != nil {
		return nil, err
	}
	if err := CheckName(req.Name); err != nil {
		return nil, fmt.Errorf("releasing a key: %w: %w", ErrKeyUnknown, err)
	}
	k, v, err := s.cfg.Store.ReleaseKey(ctx, req.Name, req.Version)
	if err != nil {
		return nil, fmt.Errorf("releasing key %s: %w", req.Name, storeErr(err))
	}
	p, err := s.cache.get(ctx, k.Policy, KeyParams{Name: k.Name, Version: v.Version, Origin: k.Origin})
	if err != nil {
		// A stored policy that no longer compiles (a newer OPA, say) is the
		// operator's problem, not the guest's.
		return nil, fmt.Errorf("compiling the release policy of key %s: %w", k.Name, errors.Join(ErrPolicyEvaluation, err))
	}
	d, err := p.Evaluate(ctx, req.Claims, s.cfg.Now(), s.cfg.PolicyTimeout)
	if err != nil {
		return nil, err
	}
	if !d.Allow {
		return nil, &DeniedError{Reasons: d.Reasons, PolicyID: p.ID, PolicySHA256: p.SHA256, Version: v.Version}
	}
	material, err := s.cfg.Sealer.Open(v.Sealed, aad(k.Name, v.Version))
	if err != nil {
		return nil, fmt.Errorf("unsealing key %s version %d: %w", k.Name, v.Version, err)
	}
	defer clear(material)
	jwe, err := keywrap.Wrap(material, rk)
	if err != nil {
		if errors.Is(err, keywrap.ErrAlgorithm) {
			return nil, fmt.Errorf("%w: %w", ErrNoRuntimeKey, err)
		}
		return nil, fmt.Errorf("wrapping key %s: %w", k.Name, err)
	}
	return &Result{Name: k.Name, Version: v.Version, JWE: jwe, PolicyID: p.ID, PolicySHA256: p.SHA256}, nil
}

// RuntimeKey returns the first key of the runtime.keys JWK Set in a
// token's claims. None, or one that does not parse, is ErrNoRuntimeKey;
// whether its type is acceptable is keywrap.Wrap's to decide.
func RuntimeKey(claims map[string]any) (jwk.Key, error) {
	rt, _ := claims["runtime"].(map[string]any)
	set, _ := rt["keys"].(map[string]any)
	keys, _ := set["keys"].([]any)
	if len(keys) == 0 {
		return nil, fmt.Errorf("%w: the token has no runtime.keys", ErrNoRuntimeKey)
	}
	b, err := json.Marshal(keys[0])
	if err != nil {
		return nil, fmt.Errorf("%w: encoding the runtime key: %w", ErrNoRuntimeKey, err)
	}
	k, err := jwk.ParseKey(b)
	if err != nil {
		return nil, fmt.Errorf("%w: parsing the runtime key: %w", ErrNoRuntimeKey, err)
	}
	return k, nil
}
