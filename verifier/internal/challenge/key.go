package challenge

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"

	"github.com/confidant-cvm/confidant/verifier/internal/store"
)

// KeyName names the nonce MAC key in the store.
const KeyName = "nonce-mac-key"

// keyAAD is the associated data the MAC key is sealed with: it names the
// key's purpose, so that no other sealed blob (a signing key, a release
// key) opens as the nonce key, nor this one as anything else.
var keyAAD = []byte("confidant verifier secret v1\x00" + KeyName)

// legacyKeySize is the size of the plaintext MAC key that verifiers stored
// before the key was sealed. A sealed key is longer (version, GCM nonce
// and tag around the 32 bytes).
const legacyKeySize = 32

// KeyStore holds the sealed MAC key. store.Store implements it.
type KeyStore interface {
	Secret(ctx context.Context, name string, create func() ([]byte, error)) ([]byte, error)
	ReplaceSecret(ctx context.Context, name string, old, new []byte) error
}

// Sealer seals the MAC key under the KEK. *seal.Sealer implements it.
type Sealer interface {
	Seal(plaintext, aad []byte) ([]byte, error)
	Open(sealed, aad []byte) ([]byte, error)
}

// LoadKey returns the nonce MAC key, which st keeps sealed under sl's KEK
// (log: where a replaced key is reported; nil: nowhere):
// on first use it makes a new random key and stores it sealed; concurrent
// first uses by several replicas all get the one stored first.
//
// A store written by a verifier that kept the key in plaintext holds a
// 32-byte value that does not open. That key is retired, not sealed: it may
// already sit in backups or replicas of the store, and whoever reads it
// there could mint nonces forever. LoadKey replaces it (atomically, and
// scrubbed from the database where the backend allows) with a new sealed
// key and reports replacedLegacy; nonces issued under the old key are then
// refused as ErrUnknown, and agents ask for a new challenge. (A scrub that
// fails is logged, not fatal: the old key is retired either way.) Any
// other value that does not open (a wrong KEK, a tampered row) is an
// error.
func LoadKey(ctx context.Context, st KeyStore, sl Sealer, log *slog.Logger) (key []byte, replacedLegacy bool, err error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	stored, err := st.Secret(ctx, KeyName, func() ([]byte, error) { return newSealedKey(sl) })
	if err != nil {
		return nil, false, fmt.Errorf("loading the nonce key: %w", err)
	}
	if key, err := sl.Open(stored, keyAAD); err == nil {
		return key, false, nil
	} else if len(stored) != legacyKeySize {
		return nil, false, fmt.Errorf("opening the nonce key (is this the KEK the store was made with?): %w", err)
	}
	next, err := newSealedKey(sl)
	if err != nil {
		return nil, false, err
	}
	err = st.ReplaceSecret(ctx, KeyName, stored, next)
	if errors.Is(err, store.ErrNotScrubbed) {
		log.Warn("the retired plaintext nonce key may remain in the database files until they are reused", "err", err)
		err = nil
	}
	switch {
	case errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrNotFound):
		// Another replica replaced it first: use the key it stored.
		if next, err = st.Secret(ctx, KeyName, func() ([]byte, error) { return newSealedKey(sl) }); err != nil {
			return nil, false, fmt.Errorf("loading the nonce key: %w", err)
		}
	case err != nil:
		return nil, false, fmt.Errorf("replacing the unsealed nonce key: %w", err)
	}
	key, err = sl.Open(next, keyAAD)
	if err != nil {
		return nil, false, fmt.Errorf("opening the nonce key: %w", err)
	}
	log.Warn("replaced the nonce key that an earlier version stored unsealed with a new key sealed under the KEK; nonces issued before are refused, and agents ask again")
	return key, true, nil
}

// newSealedKey makes a new random MAC key and seals it.
func newSealedKey(sl Sealer) ([]byte, error) {
	k := make([]byte, MinKeySize)
	if _, err := rand.Read(k); err != nil {
		return nil, fmt.Errorf("making the nonce key: %w", err)
	}
	sealed, err := sl.Seal(k, keyAAD)
	if err != nil {
		return nil, fmt.Errorf("sealing the nonce key: %w", err)
	}
	return sealed, nil
}
