package server

import (
	"bytes"
	"context"
	"net/http"
	"path/filepath"
	"testing"

	"github.com/confidant-cvm/confidant/verifier/internal/challenge"
	"github.com/confidant-cvm/confidant/verifier/internal/seal"
	"github.com/confidant-cvm/confidant/verifier/internal/store"
	"github.com/confidant-cvm/confidant/verifier/internal/store/pgtest"
	"github.com/confidant-cvm/confidant/verifier/internal/testguest"
)

// TestStartOnLegacyNonceKey: a verifier started on a store where an
// earlier version kept the nonce key in plaintext starts, attests, and
// leaves the key sealed under its KEK (and no longer the old bytes).
func TestStartOnLegacyNonceKey(t *testing.T) {
	legacy := bytes.Repeat([]byte{0x42}, 32)
	tests := map[string]func(t *testing.T, stateDir string) string{
		"sqlite":   func(t *testing.T, stateDir string) string { return "sqlite:" + filepath.Join(stateDir, "verifier.db") },
		"postgres": func(t *testing.T, _ string) string { return pgtest.DSN(t) },
	}
	for name, storeURL := range tests {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			stateDir := filepath.Join(t.TempDir(), "state")
			url := storeURL(t, stateDir)
			old, err := store.Open(ctx, url)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := old.Secret(ctx, challenge.KeyName, func() ([]byte, error) { return legacy, nil }); err != nil {
				t.Fatal(err)
			}
			old.Close()

			f := newFixture(t, fixtureOpts{stateDir: stateDir, config: func(c *Config) { c.Store = url }})
			if r := f.attest(evidenceFor(t, f.nonce(), testguest.Options{}), ""); r.status != http.StatusOK {
				t.Fatalf("attest on the migrated store: %s", r)
			}
			row, err := f.srv.Store.Secret(ctx, challenge.KeyName, nil)
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Contains(row, legacy) {
				t.Fatal("the legacy plaintext key is still stored")
			}
			kek, err := seal.LoadOrCreate(f.cfg.KEKFile)
			if err != nil {
				t.Fatal(err)
			}
			key, replaced, err := challenge.LoadKey(ctx, f.srv.Store, kek, nil)
			if err != nil || replaced || bytes.Contains(row, key) {
				t.Fatalf("stored key after start: replaced %v, raw %v, %v", replaced, bytes.Contains(row, key), err)
			}
		})
	}
}
