package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// insertNonce is a write that redeems nonce n.
func insertNonce(n string) func(ctx context.Context, tx *sql.Tx) error {
	return func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, insertNonceSQL, []byte(n), t0.Add(time.Hour).UnixNano())
		return err
	}
}

// redeemed reports whether nonce n is recorded.
func redeemed(t *testing.T, s *SQLite, n string) bool {
	t.Helper()
	var c int
	if err := s.rdb.QueryRow("SELECT count(*) FROM nonces WHERE id = ?", []byte(n)).Scan(&c); err != nil {
		t.Fatal(err)
	}
	return c == 1
}

// TestGroupCommit runs one batch by hand: each write succeeds or fails on
// its own, and only the successful ones are committed.
func TestGroupCommit(t *testing.T) {
	s := openTestSQLite(t)
	errBoom := errors.New("boom")
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	ran := false
	ops := []*writeOp[*sql.Tx]{
		{action: "ok a", fn: insertNonce("a")},
		{action: "fails", fn: func(ctx context.Context, tx *sql.Tx) error {
			if err := insertNonce("b")(ctx, tx); err != nil {
				return err
			}
			return errBoom
		}},
		{action: "cancelled", ctx: cancelled, fn: func(ctx context.Context, tx *sql.Tx) error {
			ran = true
			return insertNonce("c")(ctx, tx)
		}},
		{action: "panics", fn: func(ctx context.Context, tx *sql.Tx) error {
			if err := insertNonce("d")(ctx, tx); err != nil {
				return err
			}
			panic("kaboom")
		}},
		{action: "ok e", fn: insertNonce("e")},
		{action: "duplicate", fn: func(ctx context.Context, tx *sql.Tx) error {
			// A constraint violation fails the write, not the batch.
			_, err := tx.ExecContext(ctx, "INSERT INTO nonces (id, expires_at) VALUES (?, 0)", []byte("a"))
			return err
		}},
	}
	for _, op := range ops {
		if op.ctx == nil {
			op.ctx = context.Background()
		}
		op.done = make(chan writeResult, 1)
	}
	s.w.commitBatch(ops)
	res := make([]writeResult, len(ops))
	for i, op := range ops {
		res[i] = <-op.done
	}
	if res[0].err != nil || res[4].err != nil {
		t.Errorf("successful writes: %v, %v", res[0].err, res[4].err)
	}
	if !errors.Is(res[1].err, errBoom) {
		t.Errorf("failing write: %v", res[1].err)
	}
	if !errors.Is(res[2].err, context.Canceled) || !errors.Is(res[2].err, ErrUnavailable) || ran {
		t.Errorf("cancelled write: %v (ran: %v)", res[2].err, ran)
	}
	if p, ok := res[3].panicked.(string); !ok || !strings.Contains(p, "kaboom") {
		t.Errorf("panicking write: %+v", res[3])
	}
	if res[5].err == nil {
		t.Error("duplicate insert succeeded")
	}
	for n, want := range map[string]bool{"a": true, "b": false, "c": false, "d": false, "e": true} {
		if got := redeemed(t, s, n); got != want {
			t.Errorf("nonce %s recorded: %v, want %v", n, got, want)
		}
	}
}

// TestGroupCommitBrokenTransaction: when the shared transaction itself
// fails, every write of the batch fails, including the ones that had
// succeeded, and nothing is committed.
func TestGroupCommitBrokenTransaction(t *testing.T) {
	s := openTestSQLite(t)
	ops := []*writeOp[*sql.Tx]{
		{action: "ok x", fn: insertNonce("x")},
		{action: "breaks", fn: func(ctx context.Context, tx *sql.Tx) error {
			_, err := tx.ExecContext(ctx, "ROLLBACK")
			return err
		}},
		{action: "ok y", fn: insertNonce("y")},
	}
	for _, op := range ops {
		op.ctx, op.done = context.Background(), make(chan writeResult, 1)
	}
	s.w.commitBatch(ops)
	for _, op := range ops {
		if r := <-op.done; !errors.Is(r.err, ErrUnavailable) {
			t.Errorf("%s: got %v, want ErrUnavailable", op.action, r.err)
		}
	}
	for _, n := range []string{"x", "y"} {
		if redeemed(t, s, n) {
			t.Errorf("nonce %s committed by a broken batch", n)
		}
	}
	// The writer goes on.
	if err := s.RedeemNonce(context.Background(), []byte("z"), t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
}

// TestWritePanic: a panic inside a write reaches its caller, not the
// writer goroutine, and the store keeps working.
func TestWritePanic(t *testing.T) {
	s := openTestSQLite(t)
	ctx := context.Background()
	func() {
		defer func() {
			if p := recover(); p == nil || !strings.Contains(fmt.Sprint(p), "kaboom") {
				t.Fatalf("recovered %v", p)
			}
		}()
		_ = s.write(ctx, "panicking", func(context.Context, *sql.Tx) error { panic("kaboom") })
	}()
	if err := s.RedeemNonce(ctx, []byte("after"), t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
}

// TestSQLiteClosed: after Close, writes and reads fail with ErrUnavailable
// and Close may be called again.
func TestSQLiteClosed(t *testing.T) {
	s, err := OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "c.db"))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := s.RedeemNonce(ctx, []byte("n"), t0); !errors.Is(err, ErrUnavailable) {
		t.Errorf("write after close: %v", err)
	}
	if _, err := s.AuditHead(ctx); !errors.Is(err, ErrUnavailable) {
		t.Errorf("read after close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second close: %v", err)
	}
}

// TestSQLiteSettings pins what durability and concurrency rest on: WAL,
// synchronous=FULL and IMMEDIATE transactions on the write connection, a
// busy timeout on both pools, and readers that cannot write.
func TestSQLiteSettings(t *testing.T) {
	s := openTestSQLite(t)
	var (
		mode             string
		syncLevel, busyW int
		busyR, queryOnly int
	)
	for _, q := range []struct {
		db   *sql.DB
		stmt string
		dest any
	}{
		{s.db, "PRAGMA journal_mode", &mode},
		{s.db, "PRAGMA synchronous", &syncLevel},
		{s.db, "PRAGMA busy_timeout", &busyW},
		{s.rdb, "PRAGMA busy_timeout", &busyR},
		{s.rdb, "PRAGMA query_only", &queryOnly},
	} {
		if err := q.db.QueryRow(q.stmt).Scan(q.dest); err != nil {
			t.Fatalf("%s: %v", q.stmt, err)
		}
	}
	want := int(DefaultSQLiteBusyTimeout.Milliseconds())
	if mode != "wal" || syncLevel != 2 || busyW != want || busyR != want || queryOnly != 1 {
		t.Fatalf("journal_mode %s, synchronous %d, busy_timeout %d/%d, query_only %d; want wal, 2 (FULL), %d, 1",
			mode, syncLevel, busyW, busyR, queryOnly, want)
	}
	if _, err := s.rdb.Exec("DELETE FROM nonces"); err == nil {
		t.Fatal("the read pool can write")
	}
	if s.db.Stats().MaxOpenConnections != 1 {
		t.Fatalf("write pool of %d connections", s.db.Stats().MaxOpenConnections)
	}
}

// TestSQLiteManyWriters is the load that used to fail with SQLITE_BUSY:
// hundreds of concurrent attestations (nonce and audit record), key
// releases (audit record) and readers on one store, and two stores sharing
// the file as two processes would. Every write succeeds and the audit
// chain holds.
func TestSQLiteManyWriters(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "busy.db")
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
	const writers = 1000
	var wg sync.WaitGroup
	errs := make(chan error, 3*writers)
	for i := range writers {
		s := a
		if i%8 == 0 {
			s = b
		}
		wg.Go(func() {
			if _, err := s.RedeemNonceWithAudit(ctx, fmt.Appendf(nil, "n%d", i), t0.Add(time.Hour),
				AuditRecord{Time: t0, Event: "attest", Outcome: "affirming"}); err != nil {
				errs <- fmt.Errorf("attest %d: %w", i, err)
			}
		})
		wg.Go(func() {
			if _, err := s.AppendAudit(ctx, AuditRecord{Time: t0, Event: "release", Outcome: "granted"}); err != nil {
				errs <- fmt.Errorf("release %d: %w", i, err)
			}
		})
		wg.Go(func() {
			if _, err := s.AuditHead(ctx); err != nil {
				errs <- fmt.Errorf("read %d: %w", i, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if rep, err := VerifyAudit(ctx, a); err != nil || !rep.OK || rep.Entries != 2*writers {
		t.Fatalf("VerifyAudit: %+v, %v; want %d entries", rep, err, 2*writers)
	}
}

// TestCrashMidBatch kills the process in the middle of a group commit,
// after some writes of the batch ran: none of them is in the database
// afterwards (and none of their callers had been answered).
func TestCrashMidBatch(t *testing.T) {
	if path := os.Getenv("STORE_CRASH_BATCH_DB"); path != "" {
		crashBatchHelper(path)
		return
	}
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "crash.db")
	s, err := OpenSQLite(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.RedeemNonceWithAudit(ctx, []byte("before"), t0.Add(time.Hour), AuditRecord{Time: t0, Event: "attest"}); err != nil {
		t.Fatal(err)
	}
	s.Close()

	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashMidBatch$")
	cmd.Env = append(os.Environ(), "STORE_CRASH_BATCH_DB="+path)
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
	for n, want := range map[string]bool{"before": true, "c1": false, "c2": false} {
		if got := redeemed(t, s, n); got != want {
			t.Errorf("nonce %s recorded: %v, want %v", n, got, want)
		}
	}
	if rep, err := VerifyAudit(ctx, s); err != nil || !rep.OK || rep.HeadID != 1 {
		t.Fatalf("audit after crash: %+v, %v; want the one record from before", rep, err)
	}
}

// crashBatchHelper runs in the child: a batch whose first write redeems a
// nonce with its audit record, and whose second write dies.
func crashBatchHelper(path string) {
	s, err := OpenSQLite(context.Background(), path)
	if err != nil {
		os.Exit(2)
	}
	bg := context.Background()
	ops := []*writeOp[*sql.Tx]{
		{ctx: bg, action: "attest", fn: func(ctx context.Context, tx *sql.Tx) error {
			if err := s.redeemNonce(ctx, tx, []byte("c1"), t0.Add(time.Hour)); err != nil {
				return err
			}
			r := AuditRecord{Time: t0, Event: "attest"}
			r.normalize()
			return s.appendAudit(ctx, tx, &r, []byte("[]"))
		}},
		{ctx: bg, action: "dies", fn: func(ctx context.Context, tx *sql.Tx) error {
			if err := insertNonce("c2")(ctx, tx); err != nil {
				return err
			}
			os.Exit(3) // crash: no commit, no close
			return nil
		}},
	}
	for _, op := range ops {
		op.done = make(chan writeResult, 1)
	}
	s.w.commitBatch(ops)
	os.Exit(2)
}

// BenchmarkSQLiteAttestWrite measures what one attestation writes, from
// GOMAXPROCS × 16 goroutines at once: "one-transaction" redeems the nonce
// and appends the audit record together (what the verifier does);
// "two-writes" does them one after the other.
func BenchmarkSQLiteAttestWrite(b *testing.B) {
	ctx := context.Background()
	rec := AuditRecord{Time: t0, Event: "attest", Outcome: "affirming", TEE: "sim-sev-snp", Subject: "sim-sev-snp:00",
		TokenID: "0123456789abcdef", PolicyID: "confidant.appraisal.sim_development", Remote: "127.0.0.1",
		Reasons: []string{"all checks passed"}}
	for name, write := range map[string]func(s *SQLite, id []byte) error{
		"one-transaction": func(s *SQLite, id []byte) error {
			_, err := s.RedeemNonceWithAudit(ctx, id, t0.Add(time.Hour), rec)
			return err
		},
		"two-writes": func(s *SQLite, id []byte) error {
			if err := s.RedeemNonce(ctx, id, t0.Add(time.Hour)); err != nil {
				return err
			}
			_, err := s.AppendAudit(ctx, rec)
			return err
		},
	} {
		b.Run(name, func(b *testing.B) {
			s, err := OpenSQLite(ctx, filepath.Join(b.TempDir(), "bench.db"))
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			var n atomic.Int64
			b.SetParallelism(16)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := write(s, fmt.Appendf(nil, "nonce-%d", n.Add(1))); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
