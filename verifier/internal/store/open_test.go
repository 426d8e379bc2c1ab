package store

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestSharedFileAcrossInstances(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "shared.db")
	a, err := OpenSQLite(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := OpenSQLite(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := a.RedeemNonce(ctx, []byte("x"), t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := b.RedeemNonce(ctx, []byte("x"), t0.Add(time.Hour)); !errors.Is(err, ErrNonceReused) {
		t.Fatalf("redemption on the second instance: got %v, want ErrNonceReused", err)
	}
	sa, _ := a.Secret(ctx, "mac", func() ([]byte, error) { return []byte("from-a"), nil })
	sb, _ := b.Secret(ctx, "mac", func() ([]byte, error) { return []byte("from-b"), nil })
	if string(sa) != "from-a" || string(sb) != "from-a" {
		t.Fatalf("secrets differ: %q %q", sa, sb)
	}
}

func TestOpenURL(t *testing.T) {
	ctx := context.Background()
	tests := map[string]struct {
		url     string
		wantErr error
	}{
		"sqlite": {url: "sqlite:" + filepath.Join(t.TempDir(), "x.db")},
		// Nothing listens on port 1: the store is unavailable.
		"postgres": {url: "postgres://u:secret@127.0.0.1:1/db?connect_timeout=2", wantErr: ErrUnavailable},
		"unknown":  {url: "mysql:x", wantErr: ErrUnsupported},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			s, err := Open(ctx, tt.url)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("got %v, want %v", err, tt.wantErr)
			}
			if s != nil {
				s.Close()
			}
		})
	}
	if _, err := Open(ctx, "postgres://u:secret@127.0.0.1:1/db?connect_timeout=2"); err == nil || strings.Contains(err.Error(), "secret") {
		t.Fatalf("password in error: %v", err)
	}
	for _, bad := range []string{"nocolon", "sqlite:", "sqlite:/tmp/a?b", "postgres://x:y@h:notaport/db"} {
		if s, err := Open(ctx, bad); err == nil {
			s.Close()
			t.Errorf("Open(%q) succeeded", bad)
		}
	}
}

// TestCrashMidWrite kills a process in the middle of a write transaction
// (after the current signing key was retired, before the next one was
// committed) and checks that the database opens with the old state intact.
func TestCrashMidWrite(t *testing.T) {
	if path := os.Getenv("STORE_CRASH_HELPER_DB"); path != "" {
		crashHelper(path)
		return
	}
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "crash.db")
	s, err := OpenSQLite(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.RotateSigningKey(ctx, testKey("k1", t0), t0, time.Time{}); err != nil {
		t.Fatal(err)
	}
	s.Close()

	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashMidWrite$")
	cmd.Env = append(os.Environ(), "STORE_CRASH_HELPER_DB="+path)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 3 {
		t.Fatalf("helper did not crash as planned: %v\n%s", err, out)
	}

	s, err = OpenSQLite(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	keys, err := s.SigningKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 1 || keys[0].KID != "k1" || !keys[0].RetiredAt.IsZero() {
		t.Fatalf("half-written state after crash: %+v", keys)
	}
}

// crashHelper runs in the child process: it starts the same writes
// RotateSigningKey does and exits without committing or closing.
func crashHelper(path string) {
	ctx := context.Background()
	s, err := OpenSQLite(ctx, path)
	if err != nil {
		os.Exit(2)
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		os.Exit(2)
	}
	if _, err := tx.ExecContext(ctx, "UPDATE signing_keys SET retired_at = 1, expires_at = 2"); err != nil {
		os.Exit(2)
	}
	if _, err := tx.ExecContext(ctx, "INSERT INTO signing_keys ("+signingKeyColumns+") VALUES ('k2', 'ES256', x'00', x'00', 5, NULL, NULL)"); err != nil {
		os.Exit(2)
	}
	os.Exit(3) // crash: no commit, no close
}

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"sqlite:/var/lib/x.db":                      "sqlite:/var/lib/x.db",
		"postgres://u:pw@h:5432/db?sslmode=disable": "postgres://u:xxxxx@h:5432/db?sslmode=disable",
		"postgres://u@h/db":                         "postgres://u@h/db",
		"postgres://h/db?password=pw&sslmode=x":     "postgres://h/db?password=xxxxx&sslmode=x",
		"postgres://u:pw@h:bad port/db":             "postgres://(unparsable URL)",
	} {
		if got := Redact(in); got != want || strings.Contains(got, "pw") {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
}
