package harness

import (
	"bytes"
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/confidant-cvm/confidant/shared/secretscan"
)

// auditExportPrefix names the audit exports the verifier leaves in its
// directory when stopped (see Verifier.Stop).
const auditExportPrefix = "audit-export-"

// exportAudit writes the verifier's whole audit log (admin audit export)
// to <Dir>/audit-export-N.jsonl, so the secret scan covers it.
func (v *Verifier) exportAudit() error {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := v.admin(ctx, "audit", "export")
	if err != nil {
		return err
	}
	v.exports++
	p := filepath.Join(v.Config.Dir, fmt.Sprintf("%s%d.jsonl", auditExportPrefix, v.exports))
	if err := os.WriteFile(p, out, 0o600); err != nil {
		return fmt.Errorf("writing audit export: %w", err)
	}
	return nil
}

// SecretScan is the outcome of Lab.ScanSecrets.
type SecretScan struct {
	// Findings are the secrets found; any is a failure.
	Findings []secretscan.Finding
	// Secrets are the registered secrets' names; Scanned the files read.
	Secrets []string
	Scanned []string
}

// ScanSecrets looks for the lab's secrets in everything the lab logged:
// hostd's log, the verifiers' logs and audit exports, the guests' serial
// consoles and any other *.log below the lab's directory. The secrets are
// hostd's (the simulated secure processor's private keys, the vTPM state
// keys), each verifier's KEK, each image's disk key (when a recovery copy
// was kept), and what add registers (nil: nothing more); whole JWTs and PEM
// private keys are found whatever their value. Call it when the guests and
// verifiers are stopped.
func (l *Lab) ScanSecrets(add func(*secretscan.Scanner) error) (*SecretScan, error) {
	s := secretscan.New()
	if err := l.registerSecrets(s); err != nil {
		return nil, err
	}
	if add != nil {
		if err := add(s); err != nil {
			return nil, err
		}
	}
	res := &SecretScan{Secrets: s.Names()}
	err := filepath.WalkDir(l.Dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // removed while walking
			}
			return err
		}
		name := d.Name()
		if !d.Type().IsRegular() || !(strings.HasSuffix(name, ".log") || strings.HasPrefix(name, auditExportPrefix)) {
			return nil
		}
		found, err := s.ScanFile(p)
		if err != nil {
			return err
		}
		res.Scanned = append(res.Scanned, strings.TrimPrefix(p, l.Dir+"/"))
		res.Findings = append(res.Findings, found...)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("scanning the lab's logs for secrets: %w", err)
	}
	return res, nil
}

func (l *Lab) registerSecrets(s *secretscan.Scanner) error {
	if l.Hostd != nil {
		if err := registerHostdSecrets(s, l.Hostd.StateDir); err != nil {
			return err
		}
	}
	l.mu.Lock()
	worlds := append([]*World(nil), l.worlds...)
	l.mu.Unlock()
	for _, w := range worlds {
		kek := filepath.Join(w.Verifier.StateDir(), "signing.kek")
		if err := addFileIfExists(s, w.Name+" verifier KEK", kek); err != nil {
			return err
		}
		if w.Image != nil && w.Image.KeyFile != "" {
			if err := addFileIfExists(s, w.Name+" disk key", w.Image.KeyFile); err != nil {
				return err
			}
		}
	}
	return nil
}

// registerHostdSecrets registers the vTPM state keys (keys/) and every PEM
// private key in hostd's state outside the guests' directories (the
// simulated secure processor's ARK, ASK and VCEK keys).
func registerHostdSecrets(s *secretscan.Scanner, stateDir string) error {
	return filepath.WalkDir(stateDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		rel := strings.TrimPrefix(p, stateDir+"/")
		if d.IsDir() && rel == "guests" {
			return fs.SkipDir
		}
		if !d.Type().IsRegular() {
			return nil
		}
		if strings.HasPrefix(rel, "keys/") {
			return addFileIfExists(s, "hostd "+rel, p)
		}
		info, err := d.Info()
		if err != nil || info.Size() > 64<<10 {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for rest := b; ; {
			var blk *pem.Block
			blk, rest = pem.Decode(rest)
			if blk == nil {
				break
			}
			if strings.Contains(blk.Type, "PRIVATE KEY") {
				if err := s.Add("hostd "+rel, blk.Bytes); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

func addFileIfExists(s *secretscan.Scanner, name, path string) error {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("registering secret %s: %w", name, err)
	}
	if len(bytes.TrimSpace(b)) < secretscan.MinSecretLen {
		return nil
	}
	return s.AddEncoded(name, b)
}
