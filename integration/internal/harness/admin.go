package harness

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// AdminSocket is the verifier's admin API socket (serve's default,
// <state-dir>/admin.sock).
func (v *Verifier) AdminSocket() string { return filepath.Join(v.StateDir(), "admin.sock") }

// admin runs confidant-verifier admin ARGS against the running verifier.
func (v *Verifier) admin(ctx context.Context, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	full := append([]string{"admin", "--socket", v.AdminSocket()}, args...)
	cmd := exec.CommandContext(ctx, v.Config.Bin, full...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("confidant-verifier %s: %w: %s", strings.Join(full, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// LoadReferenceValues makes the file the verifier's reference values
// (admin reference load): stored, and used at once.
func (v *Verifier) LoadReferenceValues(ctx context.Context, file string) error {
	_, err := v.admin(ctx, "reference", "load", "--file", file)
	return err
}

// LoadPolicy makes the Rego file the verifier's appraisal policy for the
// TEE kind (admin policy load): stored, and used at once.
func (v *Verifier) LoadPolicy(ctx context.Context, kind, file string) error {
	_, err := v.admin(ctx, "policy", "load", "--kind", kind, "--file", file)
	return err
}

// SetReleasePolicy replaces a key's release policy with the Rego file
// (admin key set-policy).
func (v *Verifier) SetReleasePolicy(ctx context.Context, key, file string) error {
	_, err := v.admin(ctx, "key", "set-policy", key, "--release-policy", file)
	return err
}

// AuditRecord is one entry of the verifier's audit log (the admin API's
// AuditEntry). Event is "attest", "release" or "admin.*"; Outcome the
// verdict of an attestation that issued a token (affirming, warning),
// "granted" for a release, "ok" for an admin action, else the API's error
// code.
type AuditRecord struct {
	ID         int64     `json:"id"`
	Time       time.Time `json:"time"`
	Event      string    `json:"event"`
	Outcome    string    `json:"outcome"`
	TEE        string    `json:"tee"`
	Subject    string    `json:"sub"`
	TokenID    string    `json:"jti"`
	PolicyID   string    `json:"policy_id"`
	KeyName    string    `json:"key"`
	KeyVersion int       `json:"key_version"`
	Remote     string    `json:"remote"`
	Reasons    []string  `json:"reasons"`
}

// Audit returns the whole audit log, oldest first (admin audit export).
func (v *Verifier) Audit(ctx context.Context) ([]AuditRecord, error) {
	out, err := v.admin(ctx, "audit", "export")
	if err != nil {
		return nil, err
	}
	return decodeAudit(out)
}

// decodeAudit reads a JSON array or JSON lines of audit records.
func decodeAudit(out []byte) ([]AuditRecord, error) {
	out = bytes.TrimSpace(out)
	var recs []AuditRecord
	if len(out) == 0 {
		return nil, nil
	}
	if out[0] == '[' {
		if err := json.Unmarshal(out, &recs); err != nil {
			return nil, fmt.Errorf("decoding audit log: %w", err)
		}
		return recs, nil
	}
	dec := json.NewDecoder(bytes.NewReader(out))
	for dec.More() {
		var r AuditRecord
		if err := dec.Decode(&r); err != nil {
			return nil, fmt.Errorf("decoding audit log: %w", err)
		}
		recs = append(recs, r)
	}
	return recs, nil
}
