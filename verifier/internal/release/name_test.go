package release

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/confidant-cvm/confidant/policies"
	"github.com/confidant-cvm/confidant/shared/termsafe"
	"github.com/confidant-cvm/confidant/verifier/internal/seal"
	"github.com/confidant-cvm/confidant/verifier/internal/store"
)

// spyStore is the real SQLite store, noting every name it is asked about.
type spyStore struct {
	Store
	mu    sync.Mutex
	names []string
}

func (s *spyStore) saw(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.names = append(s.names, name)
}

func (s *spyStore) asked() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.names...)
}

func (s *spyStore) ReleaseKey(ctx context.Context, name string, version int) (store.ReleaseKey, store.ReleaseKeyVersion, error) {
	s.saw(name)
	return s.Store.ReleaseKey(ctx, name, version)
}

func (s *spyStore) ReleaseKeyInfo(ctx context.Context, name string) (store.ReleaseKey, error) {
	s.saw(name)
	return s.Store.ReleaseKeyInfo(ctx, name)
}

func (s *spyStore) DeleteReleaseKey(ctx context.Context, name string, version int) error {
	s.saw(name)
	return s.Store.DeleteReleaseKey(ctx, name, version)
}

func (s *spyStore) SetReleasePolicy(ctx context.Context, name string, policy []byte, sha256 string, at time.Time) error {
	s.saw(name)
	return s.Store.SetReleasePolicy(ctx, name, policy, sha256, at)
}

// TestInvalidNameRefusedBeforeTheStore: a name that breaks the rule is
// refused by the name check itself (ErrInvalidName, the store never asked),
// not by a store lookup that happens to fail the same way; the error
// quotes the name escaped.
func TestInvalidNameRefusedBeforeTheStore(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	if _, _, err := f.svc.Create(ctx, "disk", nil, false); err != nil {
		t.Fatal(err)
	}
	spy := &spyStore{Store: f.st}
	sealer, err := seal.New(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		t.Fatal(err)
	}
	svc, err := New(ctx, Config{Store: spy, Sealer: sealer, DefaultPolicy: policies.DefaultRelease(), Now: func() time.Time { return t0 }})
	if err != nil {
		t.Fatal(err)
	}
	good := claims(t, &f.rsa.PublicKey)
	for name, bad := range map[string]string{
		"path":          "../etc",
		"empty":         "",
		"forged row":    "x\n2026-12-07T17:00:00Z attest: affirming sub=sev-snp:forged",
		"OSC title":     "\x1b]0;pwned\x07",
		"too long":      strings.Repeat("a", 129),
		"leading dot":   ".disk",
		"space":         "disk ",
		"look-alike":    "dіsk",
		"valid + NUL":   "disk\x00",
		"valid + slash": "disk/",
	} {
		t.Run(name, func(t *testing.T) {
			ops := map[string]func() error{
				"release": func() error {
					res, err := svc.Release(ctx, Request{Name: bad, Claims: good})
					if res != nil {
						t.Fatalf("released %+v", res)
					}
					if !errors.Is(err, ErrKeyUnknown) {
						t.Fatalf("release: %v, want it to match ErrKeyUnknown too", err)
					}
					return err
				},
				"get":        func() error { _, err := svc.Get(ctx, bad); return err },
				"rotate":     func() error { _, _, _, err := svc.Rotate(ctx, bad, nil, false); return err },
				"delete":     func() error { return svc.Delete(ctx, bad, 0) },
				"set policy": func() error { _, err := svc.SetPolicy(ctx, bad, []byte(allowAll)); return err },
				"create":     func() error { _, _, err := svc.Create(ctx, bad, nil, false); return err },
				"import":     func() error { _, err := svc.Import(ctx, bad, make([]byte, 32), nil); return err },
			}
			for op, do := range ops {
				err := do()
				if !errors.Is(err, ErrInvalidName) || !errors.Is(err, ErrInvalid) {
					t.Fatalf("%s %q: %v, want ErrInvalidName", op, bad, err)
				}
				if !termsafe.Safe(err.Error()) {
					t.Fatalf("%s %q: the error message is not escaped: %q", op, bad, err.Error())
				}
			}
			if asked := spy.asked(); len(asked) != 0 {
				t.Fatalf("the store was asked about %q", asked)
			}
		})
	}
	// A valid name still reaches the store.
	if _, err := svc.Release(ctx, Request{Name: "disk", Claims: good}); err != nil {
		t.Fatal(err)
	}
	if asked := spy.asked(); len(asked) != 1 || asked[0] != "disk" {
		t.Fatalf("store asked about %q, want [disk]", asked)
	}
}
