package store

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/confidant-cvm/confidant/verifier/internal/store/pgtest"
)

func TestReleaseKeyNotFoundSQLite(t *testing.T) { testReleaseKeyNotFound(t, openTestSQLite(t)) }

func TestReleaseKeyNotFoundPostgres(t *testing.T) {
	testReleaseKeyNotFound(t, openTestPostgres(t, pgtest.DSN(t)))
}

// testReleaseKeyNotFound: the two backends used to answer an unknown
// release key or version differently (SQLite returned the key along with
// the error; PostgreSQL did not say whether the key or the version was
// unknown). Both now return ErrNotFound, zero values, and an error naming
// what is missing.
func testReleaseKeyNotFound(t *testing.T, s Store) {
	ctx := context.Background()
	k := ReleaseKey{Name: "disk", Origin: OriginPlatform, Policy: []byte("package p"), PolicySHA256: "a", CreatedAt: t0}
	if err := s.CreateReleaseKey(ctx, k, ReleaseKeyVersion{Version: 1, Sealed: []byte("s1"), KEKID: "kek", CreatedAt: t0}); err != nil {
		t.Fatal(err)
	}
	tests := map[string]struct {
		name     string
		version  int
		wantText string
		noText   string
	}{
		"unknown key":          {name: "other", version: 0, wantText: "loading release key other: ", noText: "version"},
		"unknown key, version": {name: "other", version: 1, wantText: "loading release key other: ", noText: "version"},
		"unknown version":      {name: "disk", version: 2, wantText: "loading release key disk version 2: "},
		"version never made":   {name: "disk", version: 7, wantText: "loading release key disk version 7: "},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			gk, gv, err := s.ReleaseKey(ctx, tt.name, tt.version)
			if !errors.Is(err, ErrNotFound) {
				t.Fatalf("got %v, want ErrNotFound", err)
			}
			if gk.Name != "" || gk.Policy != nil || gv.Version != 0 || gv.Sealed != nil {
				t.Errorf("returned %+v, %+v with the error; want zero values", gk, gv)
			}
			if msg := err.Error(); !strings.Contains(msg, tt.wantText) {
				t.Errorf("error %q, want %q in it", msg, tt.wantText)
			} else if tt.noText != "" && strings.Contains(msg, tt.noText) {
				t.Errorf("error %q names a %s", msg, tt.noText)
			}
		})
	}
	gk, gv, err := s.ReleaseKey(ctx, "disk", 0)
	if err != nil || gk.Name != "disk" || string(gk.Policy) != "package p" || gv.Version != 1 || string(gv.Sealed) != "s1" || gv.KEKID != "kek" {
		t.Fatalf("latest: %+v, %+v, %v", gk, gv, err)
	}
}
