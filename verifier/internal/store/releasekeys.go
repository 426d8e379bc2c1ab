package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

const insertKeyVersionSQL = "INSERT INTO release_key_versions (name, version, sealed, kek_id, created_at) VALUES (?, ?, ?, ?, ?)"

// CreateReleaseKey stores a new key with its first version.
func (s *sqlStore) CreateReleaseKey(ctx context.Context, k ReleaseKey, first ReleaseKeyVersion) error {
	if err := checkNewKey(k, first); err != nil {
		return err
	}
	return s.update(ctx, "creating release key", func(ctx context.Context, tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, s.d.q(`INSERT INTO release_keys (name, origin, policy, policy_sha256, created_at, updated_at, next_version)
			VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO NOTHING`),
			k.Name, k.Origin, k.Policy, k.PolicySHA256, k.CreatedAt.UnixNano(), k.CreatedAt.UnixNano(), first.Version+1)
		if err != nil {
			return unavailable("creating release key", err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return unavailable("creating release key", err)
		} else if n == 0 {
			return fmt.Errorf("creating release key %s: %w", k.Name, ErrConflict)
		}
		if _, err := tx.ExecContext(ctx, s.d.q(insertKeyVersionSQL),
			k.Name, first.Version, first.Sealed, first.KEKID, first.CreatedAt.UnixNano()); err != nil {
			return unavailable("creating release key", err)
		}
		return nil
	})
}

// RotateReleaseKey adds a version to the named key.
func (s *sqlStore) RotateReleaseKey(ctx context.Context, name string, at time.Time, seal func(version int) (ReleaseKeyVersion, error)) (int, error) {
	var version int
	err := s.update(ctx, "rotating release key", func(ctx context.Context, tx *sql.Tx) error {
		err := tx.QueryRowContext(ctx, s.d.q(s.d.forUpdate("SELECT next_version FROM release_keys WHERE name = ?")), name).Scan(&version)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("rotating release key %s: %w", name, ErrNotFound)
		}
		if err != nil {
			return unavailable("rotating release key", err)
		}
		v, err := seal(version)
		if err != nil {
			return fmt.Errorf("rotating release key %s: %w", name, err)
		}
		if v.Version != version || len(v.Sealed) == 0 {
			return fmt.Errorf("rotating release key %s: sealed version %d, want %d", name, v.Version, version)
		}
		if _, err := tx.ExecContext(ctx, s.d.q(insertKeyVersionSQL), name, v.Version, v.Sealed, v.KEKID, v.CreatedAt.UnixNano()); err != nil {
			return unavailable("rotating release key", err)
		}
		if _, err := tx.ExecContext(ctx, s.d.q("UPDATE release_keys SET next_version = ?, updated_at = ? WHERE name = ?"),
			version+1, at.UnixNano(), name); err != nil {
			return unavailable("rotating release key", err)
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return version, nil
}

// DeleteReleaseKey deletes a version, or the whole key for version 0.
func (s *sqlStore) DeleteReleaseKey(ctx context.Context, name string, version int) error {
	return s.update(ctx, "deleting release key", func(ctx context.Context, tx *sql.Tx) error {
		del := func(query string, args ...any) (int64, error) {
			res, err := tx.ExecContext(ctx, s.d.q(query), args...)
			if err != nil {
				return 0, unavailable("deleting release key", err)
			}
			n, err := res.RowsAffected()
			if err != nil {
				return 0, unavailable("deleting release key", err)
			}
			return n, nil
		}
		var one int
		err := tx.QueryRowContext(ctx, s.d.q(s.d.forUpdate("SELECT 1 FROM release_keys WHERE name = ?")), name).Scan(&one)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("deleting release key %s: %w", name, ErrNotFound)
		}
		if err != nil {
			return unavailable("deleting release key", err)
		}
		if version == 0 {
			if _, err := del("DELETE FROM release_key_versions WHERE name = ?", name); err != nil {
				return err
			}
			_, err := del("DELETE FROM release_keys WHERE name = ?", name)
			return err
		}
		var n int
		if err := tx.QueryRowContext(ctx, s.d.q("SELECT count(*) FROM release_key_versions WHERE name = ?"), name).Scan(&n); err != nil {
			return unavailable("deleting release key", err)
		}
		if d, err := del("DELETE FROM release_key_versions WHERE name = ? AND version = ?", name, version); err != nil {
			return err
		} else if d == 0 {
			return fmt.Errorf("deleting release key %s version %d: %w", name, version, ErrNotFound)
		}
		if n == 1 {
			return fmt.Errorf("deleting release key %s version %d: it is the only version; delete the key instead: %w", name, version, ErrConflict)
		}
		return nil
	})
}

// SetReleasePolicy replaces the release policy of the named key.
func (s *sqlStore) SetReleasePolicy(ctx context.Context, name string, policy []byte, sha string, at time.Time) error {
	if len(policy) == 0 || sha == "" {
		return errors.New("setting release policy: empty policy")
	}
	n, err := s.exec(ctx, "setting release policy", "UPDATE release_keys SET policy = ?, policy_sha256 = ?, updated_at = ? WHERE name = ?",
		policy, sha, at.UnixNano(), name)
	if err != nil {
		return err
	}
	if n == 0 {
		return fmt.Errorf("setting release policy of %s: %w", name, ErrNotFound)
	}
	return nil
}

// ReleaseKey returns the named key and one version (0: the latest), in
// one query: the key's row, with the version's columns NULL when the key
// has no such version.
func (s *sqlStore) ReleaseKey(ctx context.Context, name string, version int) (ReleaseKey, ReleaseKeyVersion, error) {
	var (
		k                ReleaseKey
		created, updated int64
		v                struct {
			version *int
			sealed  []byte
			kekID   *string
			at      *int64
		}
	)
	err := s.rdb.QueryRowContext(ctx, s.d.q(`SELECT k.name, k.origin, k.policy, k.policy_sha256, k.created_at, k.updated_at,
			v.version, v.sealed, v.kek_id, v.created_at
		FROM release_keys k LEFT JOIN release_key_versions v ON v.name = k.name AND (? = 0 OR v.version = ?)
		WHERE k.name = ?
		ORDER BY v.version DESC LIMIT 1`), version, version, name).
		Scan(&k.Name, &k.Origin, &k.Policy, &k.PolicySHA256, &created, &updated, &v.version, &v.sealed, &v.kekID, &v.at)
	if errors.Is(err, sql.ErrNoRows) {
		return ReleaseKey{}, ReleaseKeyVersion{}, fmt.Errorf("loading release key %s: %w", name, ErrNotFound)
	}
	if err != nil {
		return ReleaseKey{}, ReleaseKeyVersion{}, unavailable("loading release key", err)
	}
	if v.version == nil {
		return ReleaseKey{}, ReleaseKeyVersion{}, fmt.Errorf("loading release key %s version %d: %w", name, version, ErrNotFound)
	}
	k.CreatedAt, k.UpdatedAt = fromNanos(created), fromNanos(updated)
	return k, ReleaseKeyVersion{Version: *v.version, Sealed: v.sealed, KEKID: *v.kekID, CreatedAt: fromNanos(*v.at)}, nil
}

// ReleaseKeyInfo returns the named key with its versions' metadata.
func (s *sqlStore) ReleaseKeyInfo(ctx context.Context, name string) (ReleaseKey, error) {
	keys, err := s.releaseKeys(ctx, name)
	if err != nil {
		return ReleaseKey{}, err
	}
	if len(keys) == 0 {
		return ReleaseKey{}, fmt.Errorf("loading release key %s: %w", name, ErrNotFound)
	}
	return keys[0], nil
}

// ReleaseKeys lists every key with its versions' metadata.
func (s *sqlStore) ReleaseKeys(ctx context.Context) ([]ReleaseKey, error) {
	return s.releaseKeys(ctx, "")
}

// releaseKeys lists the named key (every key for ""), by name, with the
// metadata of its versions, in one query.
func (s *sqlStore) releaseKeys(ctx context.Context, name string) ([]ReleaseKey, error) {
	rows, err := s.rdb.QueryContext(ctx, s.d.q(`SELECT k.name, k.origin, k.policy, k.policy_sha256, k.created_at, k.updated_at,
			v.version, v.kek_id, v.created_at
		FROM release_keys k LEFT JOIN release_key_versions v ON v.name = k.name
		WHERE ? = '' OR k.name = ?
		ORDER BY k.name, v.version`), name, name)
	if err != nil {
		return nil, unavailable("listing release keys", err)
	}
	defer rows.Close()
	var keys []ReleaseKey
	for rows.Next() {
		var (
			k                ReleaseKey
			created, updated int64
			version          *int
			kekID            *string
			at               *int64
		)
		if err := rows.Scan(&k.Name, &k.Origin, &k.Policy, &k.PolicySHA256, &created, &updated, &version, &kekID, &at); err != nil {
			return nil, unavailable("listing release keys", err)
		}
		if len(keys) == 0 || keys[len(keys)-1].Name != k.Name {
			k.CreatedAt, k.UpdatedAt = fromNanos(created), fromNanos(updated)
			keys = append(keys, k)
		}
		if version != nil {
			last := &keys[len(keys)-1]
			last.Versions = append(last.Versions, ReleaseKeyVersion{Version: *version, KEKID: *kekID, CreatedAt: fromNanos(*at)})
		}
	}
	if err := rows.Err(); err != nil {
		return nil, unavailable("listing release keys", err)
	}
	return keys, nil
}

// checkNewKey checks a key and its first version before they are stored.
func checkNewKey(k ReleaseKey, first ReleaseKeyVersion) error {
	var errs []error
	if k.Name == "" {
		errs = append(errs, errors.New("empty name"))
	}
	if k.Origin != OriginPlatform && k.Origin != OriginCustomer {
		errs = append(errs, fmt.Errorf("origin %q", k.Origin))
	}
	if len(k.Policy) == 0 || k.PolicySHA256 == "" {
		errs = append(errs, errors.New("no release policy"))
	}
	if first.Version != 1 || len(first.Sealed) == 0 {
		errs = append(errs, errors.New("the first version must be version 1 with sealed material"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("creating release key: %w", err)
	}
	return nil
}
