package challenge

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/confidant-cvm/confidant/verifier/internal/store"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func newService(t *testing.T, st NonceStore, c *clock, key []byte) *Service {
	t.Helper()
	s, err := New(Config{Key: key, Store: st, Now: c.now, TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func openStore(t *testing.T, path string) *store.SQLite {
	t.Helper()
	st, err := store.OpenSQLite(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func TestRedeem(t *testing.T) {
	ctx := context.Background()
	key := bytes.Repeat([]byte{7}, 32)
	c := &clock{t: time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)}
	st := openStore(t, filepath.Join(t.TempDir(), "db"))
	s := newService(t, st, c, key)

	n, err := s.Issue()
	if err != nil {
		t.Fatal(err)
	}
	if len(n.Value) != NonceSize || !n.Expires.Equal(c.t.Add(time.Minute)) {
		t.Fatalf("nonce %x expires %v", n.Value, n.Expires)
	}
	other := newService(t, st, c, bytes.Repeat([]byte{8}, 32))
	forged, _ := other.Issue()
	tampered := bytes.Clone(n.Value)
	tampered[RandomSize] ^= 1 // move the expiry
	fresh := func() []byte { v, _ := s.Issue(); return v.Value }
	// mint makes a nonce with the right key and any expiry, as anyone who
	// read the key could.
	minted := byte(0)
	mint := func(expires time.Time) []byte {
		v := make([]byte, NonceSize)
		minted++
		v[0] = minted // a distinct nonce each time
		binary.BigEndian.PutUint64(v[RandomSize:], uint64(expires.Unix()))
		copy(v[RandomSize+expirySize:], s.tag(v[:RandomSize+expirySize]))
		return v
	}
	ahead := &clock{t: c.t.Add(30 * time.Second)} // a replica whose clock runs ahead
	fromAhead, _ := newService(t, st, ahead, key).Issue()

	tests := map[string]struct {
		nonce   []byte
		advance time.Duration
		wantErr error
	}{
		"valid":                          {nonce: fresh()},
		"other key":                      {nonce: forged.Value, wantErr: ErrUnknown},
		"tampered expiry":                {nonce: tampered, wantErr: ErrUnknown},
		"short":                          {nonce: n.Value[:32], wantErr: ErrUnknown},
		"empty":                          {nonce: nil, wantErr: ErrUnknown},
		"expired":                        {nonce: fresh(), advance: time.Minute, wantErr: ErrExpired},
		"just before expiry":             {nonce: fresh(), advance: time.Minute - time.Second},
		"valid tag, expiry a year ahead": {nonce: mint(c.t.AddDate(1, 0, 0)), wantErr: ErrUnknown},
		"valid tag, expiry past TTL + skew": {
			nonce: mint(c.t.Add(time.Minute + DefaultMaxSkew + time.Second)), wantErr: ErrUnknown},
		"valid tag, expiry at TTL + skew": {nonce: mint(c.t.Add(time.Minute + DefaultMaxSkew))},
		"from a replica 30 s ahead":       {nonce: fromAhead.Value},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			cc := *c
			cc.t = c.t.Add(tt.advance)
			s2 := newService(t, st, &cc, key)
			if err := s2.Redeem(ctx, tt.nonce); !errors.Is(err, tt.wantErr) {
				t.Fatalf("got %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func TestRedeemOnceAcrossReplicas(t *testing.T) {
	ctx := context.Background()
	key := bytes.Repeat([]byte{7}, 32)
	c := &clock{t: time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)}
	path := filepath.Join(t.TempDir(), "db")
	a := newService(t, openStore(t, path), c, key)
	b := newService(t, openStore(t, path), c, key)
	n, err := a.Issue()
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Redeem(ctx, n.Value); err != nil {
		t.Fatalf("first redemption on replica b: %v", err)
	}
	if err := a.Redeem(ctx, n.Value); !errors.Is(err, ErrReused) {
		t.Fatalf("second redemption on replica a: got %v, want ErrReused", err)
	}
	if err := b.Redeem(ctx, n.Value); !errors.Is(err, ErrReused) {
		t.Fatalf("second redemption on replica b: got %v, want ErrReused", err)
	}
}

func TestNewValidates(t *testing.T) {
	if _, err := New(Config{Key: make([]byte, 16)}); err == nil {
		t.Fatal("short key and no store accepted")
	}
	if _, err := New(Config{Key: make([]byte, 32), Store: nopStore{}, MaxSkew: -time.Second}); err == nil {
		t.Fatal("negative clock skew accepted")
	}
}

func FuzzCheck(f *testing.F) {
	c := &clock{t: time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)}
	s, err := New(Config{Key: bytes.Repeat([]byte{1}, 32), Store: nopStore{}, Now: c.now,
		Rand: bytes.NewReader(bytes.Repeat([]byte{3}, RandomSize))}) // the same nonce in every fuzz worker
	if err != nil {
		f.Fatal(err)
	}
	n, _ := s.Issue()
	f.Add(n.Value)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		if _, err := s.Check(b); err == nil && !bytes.Equal(b, n.Value) {
			t.Fatalf("forged nonce accepted: %x", b)
		}
	})
}

type nopStore struct{}

func (nopStore) RedeemNonce(context.Context, []byte, time.Time) error { return nil }

func (nopStore) RedeemNonceWithAudit(context.Context, []byte, time.Time, store.AuditRecord) (int64, error) {
	return 0, nil
}
