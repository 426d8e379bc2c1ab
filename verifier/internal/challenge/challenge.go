// Package challenge issues and redeems attestation nonces.
//
// Issuing is stateless: a nonce is 32 random bytes, its expiry (8 bytes,
// Unix seconds, big-endian) and an HMAC-SHA256 tag over both truncated to
// 24 bytes — 64 bytes in all. Only the holder of the MAC key (kept in the
// store, shared by all replicas) can make one. Redeeming checks the tag and
// the expiry, then records the nonce in the store until it expires, so a
// second redemption fails on any replica sharing the store.
package challenge

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/confidant-cvm/confidant/verifier/internal/store"
)

// Sizes of a nonce and its parts.
const (
	// RandomSize is the entropy in a nonce.
	RandomSize = 32
	expirySize = 8
	tagSize    = 24
	// NonceSize is the size of a whole nonce.
	NonceSize = RandomSize + expirySize + tagSize
	// MinKeySize is the smallest MAC key accepted.
	MinKeySize = 32
	// DefaultTTL is how long a nonce stays redeemable by default.
	DefaultTTL = 5 * time.Minute
	// DefaultMaxSkew is how far another replica's clock may run ahead of
	// this one's by default.
	DefaultMaxSkew = time.Minute
)

// Sentinel errors for redemption outcomes.
var (
	// ErrUnknown means the nonce was not issued by this verifier (wrong
	// size or tag, or an expiry further ahead than any this verifier
	// issues).
	ErrUnknown = errors.New("nonce unknown")
	// ErrExpired means the nonce's expiry has passed.
	ErrExpired = errors.New("nonce expired")
	// ErrReused means the nonce was redeemed before.
	ErrReused = store.ErrNonceReused
)

var macLabel = []byte("confidant nonce v1\x00")

// NonceStore records redeemed nonces, alone or with the audit record of
// the attempt that spent them. store.Store implements it.
type NonceStore interface {
	RedeemNonce(ctx context.Context, id []byte, expires time.Time) error
	RedeemNonceWithAudit(ctx context.Context, id []byte, expires time.Time, r store.AuditRecord) (int64, error)
}

// Config configures a Service.
type Config struct {
	// Key is the MAC key, at least MinKeySize bytes.
	Key []byte
	// Store records redeemed nonces. Required.
	Store NonceStore
	// TTL is how long an issued nonce is valid; zero means DefaultTTL. A
	// nonce whose expiry is more than TTL + MaxSkew ahead is refused even
	// with a valid tag: no replica sharing the key issues one.
	TTL time.Duration
	// MaxSkew is how far ahead of this clock another replica's clock (that
	// issued a nonce) may run; zero means DefaultMaxSkew.
	MaxSkew time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Rand is the entropy source; nil means crypto/rand.
	Rand io.Reader
}

// Service issues and redeems nonces.
type Service struct {
	key   []byte
	store NonceStore
	ttl   time.Duration
	skew  time.Duration
	now   func() time.Time
	rand  io.Reader
}

// New returns a Service.
func New(cfg Config) (*Service, error) {
	var errs []error
	if len(cfg.Key) < MinKeySize {
		errs = append(errs, fmt.Errorf("MAC key is %d bytes, want at least %d", len(cfg.Key), MinKeySize))
	}
	if cfg.Store == nil {
		errs = append(errs, errors.New("no nonce store"))
	}
	if cfg.TTL < 0 {
		errs = append(errs, fmt.Errorf("negative TTL %v", cfg.TTL))
	}
	if cfg.MaxSkew < 0 {
		errs = append(errs, fmt.Errorf("negative clock skew %v", cfg.MaxSkew))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("configuring challenge service: %w", err)
	}
	s := &Service{key: append([]byte(nil), cfg.Key...), store: cfg.Store, ttl: cfg.TTL, skew: cfg.MaxSkew,
		now: cfg.Now, rand: cfg.Rand}
	if s.ttl == 0 {
		s.ttl = DefaultTTL
	}
	if s.skew == 0 {
		s.skew = DefaultMaxSkew
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.rand == nil {
		s.rand = rand.Reader
	}
	return s, nil
}

// Nonce is an issued challenge.
type Nonce struct {
	// Value is the nonce bytes (NonceSize).
	Value []byte
	// Expires is when the nonce stops being redeemable.
	Expires time.Time
}

// TTL returns how long issued nonces stay valid.
func (s *Service) TTL() time.Duration { return s.ttl }

// Issue makes a new nonce.
func (s *Service) Issue() (Nonce, error) {
	n := make([]byte, NonceSize)
	if _, err := io.ReadFull(s.rand, n[:RandomSize]); err != nil {
		return Nonce{}, fmt.Errorf("issuing nonce: %w", err)
	}
	expires := s.now().Add(s.ttl).Truncate(time.Second)
	binary.BigEndian.PutUint64(n[RandomSize:], uint64(expires.Unix()))
	copy(n[RandomSize+expirySize:], s.tag(n[:RandomSize+expirySize]))
	return Nonce{Value: n, Expires: expires.UTC()}, nil
}

func (s *Service) tag(body []byte) []byte {
	m := hmac.New(sha256.New, s.key)
	m.Write(macLabel)
	m.Write(body)
	return m.Sum(nil)[:tagSize]
}

// Check verifies that nonce was issued by this service and has not expired,
// without recording it. It returns the nonce's expiry. A valid tag is not
// enough: an expiry later than now + TTL + MaxSkew was never issued (only
// someone holding the MAC key made it) and is ErrUnknown.
func (s *Service) Check(nonce []byte) (time.Time, error) {
	if len(nonce) != NonceSize {
		return time.Time{}, fmt.Errorf("checking nonce: %d bytes: %w", len(nonce), ErrUnknown)
	}
	body := nonce[:RandomSize+expirySize]
	if !hmac.Equal(s.tag(body), nonce[RandomSize+expirySize:]) {
		return time.Time{}, fmt.Errorf("checking nonce: bad tag: %w", ErrUnknown)
	}
	exp := binary.BigEndian.Uint64(nonce[RandomSize:])
	if exp > 1<<62 {
		return time.Time{}, fmt.Errorf("checking nonce: expiry out of range: %w", ErrUnknown)
	}
	expires := time.Unix(int64(exp), 0).UTC()
	now := s.now()
	if !now.Before(expires) {
		return time.Time{}, fmt.Errorf("checking nonce: expired at %s: %w", expires.Format(time.RFC3339), ErrExpired)
	}
	if latest := now.Add(s.ttl + s.skew); expires.After(latest) {
		return time.Time{}, fmt.Errorf("checking nonce: expiry %s is later than now + TTL (%v) + clock skew (%v): %w",
			expires.Format(time.RFC3339), s.ttl, s.skew, ErrUnknown)
	}
	return expires, nil
}

// Redeem checks nonce and records it as used. A nonce redeems once, on
// any replica sharing the store; store failures match
// store.ErrUnavailable.
func (s *Service) Redeem(ctx context.Context, nonce []byte) error {
	c, err := s.Claim(nonce)
	if err != nil {
		return err
	}
	if err := s.store.RedeemNonce(ctx, c.id, c.Expires); err != nil {
		return fmt.Errorf("redeeming nonce: %w", err)
	}
	return nil
}

// Claim is a nonce that passed Check and is not redeemed yet: what
// redeeming it takes.
type Claim struct {
	// id is the nonce's random part, its key in the store.
	id []byte
	// Expires is the nonce's expiry.
	Expires time.Time
}

// Claim checks nonce as Check does and returns what redeeming it takes;
// it records nothing.
func (s *Service) Claim(nonce []byte) (*Claim, error) {
	expires, err := s.Check(nonce)
	if err != nil {
		return nil, err
	}
	return &Claim{id: bytes.Clone(nonce[:RandomSize]), Expires: expires}, nil
}

// RedeemWithAudit records the claimed nonce as used in the store
// transaction that appends rec to the audit log: both or neither. A nonce
// redeems once, on any replica sharing the store (ErrReused); store
// failures match store.ErrUnavailable and are returned as the store
// words them.
func (s *Service) RedeemWithAudit(ctx context.Context, c *Claim, rec store.AuditRecord) error {
	_, err := s.store.RedeemNonceWithAudit(ctx, c.id, c.Expires, rec)
	return err
}
