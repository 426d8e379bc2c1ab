package store

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"time"
)

// maxWriteBatch bounds the writes committed together.
const maxWriteBatch = 128

// errClosed: the store was closed.
var errClosed = errors.New("store closed")

// writeOp is one write waiting for a writer; T is the transaction type its
// function gets (*sql.Tx, for every database).
type writeOp[T any] struct {
	ctx    context.Context
	action string
	fn     func(ctx context.Context, tx T) error
	done   chan writeResult
}

type writeResult struct {
	err error
	// panicked holds what fn panicked with, re-raised in the caller.
	panicked any
}

func (r writeResult) ok() bool { return r.err == nil && r.panicked == nil }

// batch is the transaction a writer runs a batch of writes in, with one
// savepoint at a time to isolate each write.
type batch[T any] interface {
	tx() T
	savepoint(ctx context.Context) error
	release(ctx context.Context) error
	rollbackTo(ctx context.Context) error
	commit(ctx context.Context) error
	rollback(ctx context.Context) error
}

// writer is a store's writer goroutine: it takes every write waiting at
// that moment, runs them one after the other in one transaction, each in
// its own savepoint (a write that fails rolls back only itself), then
// commits once — group commit. Concurrent writes queue in Go instead of
// contending for the database's locks, and N of them cost one commit (one
// fsync, one round of lock waits).
type writer[T any] struct {
	// begin starts the transaction of a batch.
	begin func(ctx context.Context) (batch[T], error)
	// timeout bounds a batch, begin included; zero: no bound.
	timeout   time.Duration
	ops       chan *writeOp[T]
	closing   chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

// startWriter starts a writer goroutine; close stops it.
func startWriter[T any](begin func(ctx context.Context) (batch[T], error), timeout time.Duration) *writer[T] {
	w := &writer[T]{begin: begin, timeout: timeout, ops: make(chan *writeOp[T]),
		closing: make(chan struct{}), done: make(chan struct{})}
	go w.loop()
	return w
}

// close stops the writer after the batch it runs, and waits for it.
// Writes after close fail with ErrUnavailable.
func (w *writer[T]) close() {
	w.closeOnce.Do(func() {
		close(w.closing)
		<-w.done
	})
}

// write runs fn in the writer's transaction and returns once that
// transaction committed or failed: nil means fn's writes are committed.
// fn must use the ctx and tx it is given. That ctx is not the caller's: a
// statement interrupted in the middle of a shared transaction would roll
// back the other writes too. A write whose ctx ends before its turn is not
// run. Errors from fn are returned as they are; errors from the database
// itself match ErrUnavailable. A panic in fn is re-raised here.
func (w *writer[T]) write(ctx context.Context, action string, fn func(ctx context.Context, tx T) error) error {
	op := &writeOp[T]{ctx: ctx, action: action, fn: fn, done: make(chan writeResult, 1)}
	select {
	case w.ops <- op:
	case <-w.closing:
		return unavailable(action, errClosed)
	case <-ctx.Done():
		return unavailable(action, ctx.Err())
	}
	res := <-op.done
	if res.panicked != nil {
		panic(res.panicked)
	}
	return res.err
}

func (w *writer[T]) loop() {
	defer close(w.done)
	ops := make([]*writeOp[T], 0, maxWriteBatch)
	for {
		select {
		case op := <-w.ops:
			ops = append(ops[:0], op)
		case <-w.closing:
			return
		}
	fill:
		for len(ops) < maxWriteBatch {
			select {
			case op := <-w.ops:
				ops = append(ops, op)
			default:
				break fill
			}
		}
		w.commitBatch(ops)
		clear(ops)
	}
}

// commitBatch runs ops in one transaction, each in a savepoint, commits,
// and answers every op.
func (w *writer[T]) commitBatch(ops []*writeOp[T]) {
	res := make([]writeResult, len(ops))
	applied := make([]bool, len(ops))
	defer func() {
		for i, op := range ops {
			op.done <- res[i]
		}
	}()
	ctx := context.Background()
	if w.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, w.timeout)
		defer cancel()
	}
	b, err := w.begin(ctx)
	if err != nil {
		for i, op := range ops {
			res[i].err = unavailable(op.action, err)
		}
		return
	}
	// broken: the transaction is unusable (the database rolled it back, or
	// a savepoint statement failed); nothing of the batch is committed.
	var broken error
	for i, op := range ops {
		if err := op.ctx.Err(); err != nil {
			res[i].err = unavailable(op.action, err)
			continue
		}
		if broken = b.savepoint(ctx); broken != nil {
			break
		}
		res[i] = runWrite(ctx, op, b.tx())
		if res[i].ok() {
			if broken = b.release(ctx); broken != nil {
				break
			}
			applied[i] = true
			continue
		}
		if broken = b.rollbackTo(ctx); broken != nil {
			break
		}
		if broken = b.release(ctx); broken != nil {
			break
		}
	}
	if broken == nil {
		broken = b.commit(ctx)
	} else {
		_ = b.rollback(context.WithoutCancel(ctx))
	}
	if broken == nil {
		return
	}
	for i, op := range ops {
		if applied[i] || res[i].ok() {
			res[i] = writeResult{err: unavailable(op.action, broken)}
		}
	}
}

// runWrite runs one write's fn, turning a panic into a result.
func runWrite[T any](ctx context.Context, op *writeOp[T], tx T) (res writeResult) {
	defer func() {
		if p := recover(); p != nil {
			res = writeResult{panicked: fmt.Sprintf("store write %q panicked: %v\n%s", op.action, p, debug.Stack())}
		}
	}()
	return writeResult{err: op.fn(ctx, tx)}
}
