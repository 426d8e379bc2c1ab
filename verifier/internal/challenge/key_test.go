package challenge

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/confidant-cvm/confidant/verifier/internal/seal"
	"github.com/confidant-cvm/confidant/verifier/internal/store"
	"github.com/confidant-cvm/confidant/verifier/internal/store/pgtest"
)

// backend opens stores on one database and reads the key row directly,
// with SQL, behind the store's back.
type backend struct {
	open    func(t *testing.T) store.Store
	readRow func(t *testing.T) []byte
	// conn is a direct connection (PostgreSQL only).
	conn func(t *testing.T) *pgx.Conn
}

func sqliteBackend(t *testing.T) backend {
	path := filepath.Join(t.TempDir(), "verifier.db")
	return backend{
		open: func(t *testing.T) store.Store { return openStore(t, path) },
		readRow: func(t *testing.T) []byte {
			t.Helper()
			db, err := sql.Open("sqlite", "file:"+path+"?_query_only=1")
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			var v []byte
			if err := db.QueryRow("SELECT value FROM secrets WHERE name = ?", KeyName).Scan(&v); err != nil {
				t.Fatal(err)
			}
			return v
		},
	}
}

func postgresBackend(t *testing.T) backend {
	dsn := pgtest.DSN(t)
	return backend{
		open: func(t *testing.T) store.Store {
			t.Helper()
			st, err := store.OpenPostgres(context.Background(), dsn)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { st.Close() })
			return st
		},
		conn: func(t *testing.T) *pgx.Conn {
			t.Helper()
			conn, err := pgx.Connect(context.Background(), dsn)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { conn.Close(context.Background()) })
			return conn
		},
		readRow: func(t *testing.T) []byte {
			t.Helper()
			ctx := context.Background()
			conn, err := pgx.Connect(ctx, dsn)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close(ctx)
			var v []byte
			if err := conn.QueryRow(ctx, "SELECT value FROM secrets WHERE name = $1", KeyName).Scan(&v); err != nil {
				t.Fatal(err)
			}
			return v
		},
	}
}

func newSealer(t *testing.T, b byte) *seal.Sealer {
	t.Helper()
	s, err := seal.New(bytes.Repeat([]byte{b}, seal.KeySize))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// checkSealedRow fails unless the stored row is key sealed under kek for
// the nonce key's purpose, and nothing else opens it.
func checkSealedRow(t *testing.T, row, key []byte, kek *seal.Sealer) {
	t.Helper()
	if len(key) != MinKeySize {
		t.Fatalf("key is %d bytes", len(key))
	}
	if bytes.Equal(row, key) || bytes.Contains(row, key) {
		t.Fatal("the stored row holds the raw key")
	}
	if got, err := kek.Open(row, keyAAD); err != nil || !bytes.Equal(got, key) {
		t.Fatalf("the row does not open to the key under the KEK: %v", err)
	}
	if _, err := newSealer(t, 0xEE).Open(row, keyAAD); !errors.Is(err, seal.ErrOpen) {
		t.Fatalf("the row opened under another KEK: %v", err)
	}
	if _, err := kek.Open(row, []byte("os-disk")); !errors.Is(err, seal.ErrOpen) {
		t.Fatalf("the row opened for another purpose: %v", err)
	}
}

func forBackends(t *testing.T, f func(t *testing.T, b backend)) {
	t.Run("sqlite", func(t *testing.T) { f(t, sqliteBackend(t)) })
	t.Run("postgres", func(t *testing.T) { f(t, postgresBackend(t)) })
}

// TestLoadKeySealed: the key is made once and stored only sealed under the
// KEK; a verifier with another KEK does not start.
func TestLoadKeySealed(t *testing.T) {
	forBackends(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		st, kek := b.open(t), newSealer(t, 1)
		key, replaced, err := LoadKey(ctx, st, kek, nil)
		if err != nil || replaced {
			t.Fatalf("first load: replaced %v, %v", replaced, err)
		}
		row := b.readRow(t)
		checkSealedRow(t, row, key, kek)
		again, replaced, err := LoadKey(ctx, b.open(t), kek, nil)
		if err != nil || replaced || !bytes.Equal(again, key) {
			t.Fatalf("second load: replaced %v, same %v, %v", replaced, bytes.Equal(again, key), err)
		}
		if _, _, err := LoadKey(ctx, st, newSealer(t, 2), nil); !errors.Is(err, seal.ErrOpen) {
			t.Fatalf("load under another KEK: got %v, want seal.ErrOpen", err)
		}
		if !bytes.Equal(b.readRow(t), row) {
			t.Fatal("a load under another KEK changed the stored key")
		}
	})
}

// TestLoadKeyReplacesLegacy: a store that an earlier verifier wrote holds
// the key in plaintext. Loading replaces it with a new sealed key (the old
// one may sit in backups); nonces under the old key are refused after.
func TestLoadKeyReplacesLegacy(t *testing.T) {
	forBackends(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		legacy := bytes.Repeat([]byte{0x42}, legacyKeySize)
		st, kek := b.open(t), newSealer(t, 1)
		if _, err := st.Secret(ctx, KeyName, func() ([]byte, error) { return legacy, nil }); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b.readRow(t), legacy) {
			t.Fatal("setup: the legacy key is not stored in plaintext")
		}
		// Two replicas start at once on the old store: both end with the
		// one new key.
		keys := make([][]byte, 2)
		errs := make([]error, 2)
		var wg sync.WaitGroup
		for i := range 2 {
			wg.Go(func() { keys[i], _, errs[i] = LoadKey(ctx, b.open(t), kek, nil) })
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(keys[0], keys[1]) || bytes.Equal(keys[0], legacy) {
			t.Fatal("replicas disagree on the new key, or kept the legacy one")
		}
		checkSealedRow(t, b.readRow(t), keys[0], kek)
		if _, replaced, err := LoadKey(ctx, st, kek, nil); err != nil || replaced {
			t.Fatalf("load after the replacement: replaced %v, %v", replaced, err)
		}

		c := &clock{t: time.Now()}
		old, err := newService(t, st, c, legacy).Issue()
		if err != nil {
			t.Fatal(err)
		}
		if err := newService(t, st, c, keys[0]).Redeem(ctx, old.Value); !errors.Is(err, ErrUnknown) {
			t.Fatalf("nonce under the legacy key: got %v, want ErrUnknown", err)
		}
	})
}

// TestLoadKeyScrubFailureIsNotFatal: when the old key cannot be scrubbed
// from the database files (here VACUUM FULL waits for a lock until the
// context ends), the new sealed key is used all the same, since the old
// one is retired, and the failure is logged.
func TestLoadKeyScrubFailureIsNotFatal(t *testing.T) {
	b := postgresBackend(t)
	st, kek := b.open(t), newSealer(t, 1)
	legacy := bytes.Repeat([]byte{0x42}, legacyKeySize)
	if _, err := st.Secret(context.Background(), KeyName, func() ([]byte, error) { return legacy, nil }); err != nil {
		t.Fatal(err)
	}
	lock := b.conn(t)
	tx, err := lock.Begin(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.Background())
	if _, err := tx.Exec(context.Background(), "LOCK TABLE secrets IN ACCESS SHARE MODE"); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	key, replaced, err := LoadKey(ctx, st, kek, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil || !replaced {
		t.Fatalf("replaced %v, %v", replaced, err)
	}
	if !strings.Contains(logs.String(), "may remain in the database files") {
		t.Errorf("scrub failure not logged:\n%s", logs.String())
	}
	tx.Rollback(context.Background())
	checkSealedRow(t, b.readRow(t), key, kek)
}
