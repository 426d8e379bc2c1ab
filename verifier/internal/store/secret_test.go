package store

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/confidant-cvm/confidant/verifier/internal/store/pgtest"
)

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// testReplaceSecret is the ReplaceSecret contract: a compare-and-swap.
func testReplaceSecret(t *testing.T, s Store) {
	ctx := context.Background()
	old, next := randomBytes(t, 32), randomBytes(t, 61)
	if _, err := s.Secret(ctx, "k", func() ([]byte, error) { return old, nil }); err != nil {
		t.Fatal(err)
	}
	tests := map[string]struct {
		name      string
		old, next []byte
		wantErr   error
	}{
		"stale old value": {name: "k", old: randomBytes(t, 32), next: next, wantErr: ErrConflict},
		"unknown name":    {name: "other", old: old, next: next, wantErr: ErrNotFound},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			if err := s.ReplaceSecret(ctx, tt.name, tt.old, tt.next); !errors.Is(err, tt.wantErr) {
				t.Fatalf("got %v, want %v", err, tt.wantErr)
			}
			if v, _ := s.Secret(ctx, "k", nil); !bytes.Equal(v, old) {
				t.Fatal("a refused replacement changed the secret")
			}
		})
	}
	if err := s.ReplaceSecret(ctx, "k", old, nil); err == nil {
		t.Fatal("empty new value accepted")
	}
	if err := s.ReplaceSecret(ctx, "k", old, next); err != nil {
		t.Fatal(err)
	}
	if v, err := s.Secret(ctx, "k", nil); err != nil || !bytes.Equal(v, next) {
		t.Fatalf("after replacement: %x, %v", v, err)
	}
}

func TestReplaceSecretSQLite(t *testing.T) { testReplaceSecret(t, openTestSQLite(t)) }

func TestReplaceSecretPostgres(t *testing.T) {
	testReplaceSecret(t, openTestPostgres(t, pgtest.DSN(t)))
}

// sqliteFiles returns the bytes of the database file and its WAL.
func sqliteFiles(t *testing.T, path string) []byte {
	t.Helper()
	var all []byte
	for _, p := range []string{path, path + "-wal"} {
		b, err := os.ReadFile(p)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		all = append(all, b...)
	}
	return all
}

// TestReplaceSecretScrubsSQLite: after ReplaceSecret the old value is in
// neither the database file nor its WAL (it was in one of them before).
func TestReplaceSecretScrubsSQLite(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "verifier.db")
	s, err := OpenSQLite(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	old := randomBytes(t, 32)
	if _, err := s.Secret(ctx, "k", func() ([]byte, error) { return old, nil }); err != nil {
		t.Fatal(err)
	}
	// A row stored after it, so that the new value is not simply written
	// over the old one.
	if _, err := s.Secret(ctx, "later", func() ([]byte, error) { return randomBytes(t, 32), nil }); err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(sqliteFiles(t, path), old) {
		t.Fatal("the stored secret is not in the database files: this test cannot see it")
	}
	if err := s.ReplaceSecret(ctx, "k", old, randomBytes(t, 61)); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sqliteFiles(t, path), old) {
		t.Fatal("the replaced secret is still readable in the database files")
	}
}

// TestReplaceSecretScrubsPostgres: after ReplaceSecret the old value is no
// longer in the table's file (it was, as a dead row version, without the
// VACUUM FULL). It reads the file of a cluster on this machine, as
// scripts/start-postgres.sh runs it.
func TestReplaceSecretScrubsPostgres(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.DSN(t)
	s := openTestPostgres(t, dsn)
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	tableFile := func() []byte {
		t.Helper()
		if _, err := conn.Exec(ctx, "CHECKPOINT"); err != nil {
			t.Fatalf("CHECKPOINT (the test database user must be a superuser): %v", err)
		}
		var dir, rel string
		if err := conn.QueryRow(ctx, "SELECT current_setting('data_directory'), pg_relation_filepath('secrets')").Scan(&dir, &rel); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(dir, rel))
		if err != nil {
			t.Fatalf("reading the secrets table's file (the cluster must run on this machine): %v", err)
		}
		return b
	}
	old := randomBytes(t, 32)
	if _, err := s.Secret(ctx, "k", func() ([]byte, error) { return old, nil }); err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(tableFile(), old) {
		t.Fatal("the stored secret is not in the table's file: this test cannot see it")
	}
	next := randomBytes(t, 61)
	if err := s.ReplaceSecret(ctx, "k", old, next); err != nil {
		t.Fatal(err)
	}
	f := tableFile()
	if bytes.Contains(f, old) {
		t.Fatal("the replaced secret is still readable in the table's file")
	}
	if !bytes.Contains(f, next) {
		t.Fatal("the new secret is not in the table's file: this test reads the wrong file")
	}
}
