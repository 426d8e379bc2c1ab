//go:build cgo

package server

import (
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/confidant-cvm/confidant/shared/testenv"
	"github.com/confidant-cvm/confidant/verifier/internal/api"
	"github.com/confidant-cvm/confidant/verifier/internal/store"
	"github.com/confidant-cvm/confidant/verifier/internal/testguest"
)

// fillDisk writes path until the file system is full.
func fillDisk(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("filling the disk: %v", err)
			}
			return
		}
	}
}

// storeDown checks that an attestation and a release answer 503 with a
// reason that says why, and write no token and no key.
func storeDown(t *testing.T, f *fixture, tok, reason string) {
	t.Helper()
	r := f.attest(evidenceFor(t, f.nonce(), testguest.Options{}), "")
	if r.status != http.StatusServiceUnavailable || r.errBody(t).Error != api.CodeStoreUnavailable || !hasReason(r.errBody(t).Reasons, reason) {
		t.Fatalf("attest: %v, want 503 %s with %q", r, api.CodeStoreUnavailable, reason)
	}
	r = f.releaseReq("k", tok, nil)
	if r.status != http.StatusServiceUnavailable || r.errBody(t).Error != api.CodeStoreUnavailable || !hasReason(r.errBody(t).Reasons, reason) {
		t.Fatalf("release: %v, want 503 %s with %q", r, api.CodeStoreUnavailable, reason)
	}
}

// storeBack checks that attestation and release work again, without a
// restart, and that the audit chain is whole.
func storeBack(t *testing.T, f *fixture) {
	t.Helper()
	tok := f.token(testguest.Options{}, "")
	decodeRelease(t, f.releaseReq("k", tok, nil))
	rep, err := store.VerifyAudit(t.Context(), f.srv.Store)
	if err != nil || !rep.OK {
		t.Fatalf("audit chain after recovery: %+v, %v", rep, err)
	}
}

// TestSQLiteDiskFull: the disk under the SQLite store fills up; requests
// that must write answer 503 saying so, and once space is free again the
// same process serves them.
func TestSQLiteDiskFull(t *testing.T) {
	dir := testenv.Tmpfs(t, "16m")
	f := newFixture(t, fixtureOpts{stateDir: filepath.Join(dir, "state")})
	f.createKey("k", releasePolicy(t, "sim_development.rego"))
	tok := f.token(testguest.Options{}, "")
	filler := filepath.Join(dir, "filler")
	fillDisk(t, filler)
	storeDown(t, f, tok, "full")
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	storeBack(t, f)
}
