package build

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/confidant-cvm/confidant/images/internal/encrypt"
	"github.com/confidant-cvm/confidant/images/internal/keyregistry"
)

// key settles the disk key: made by the verifier (platform-managed, with
// an optional recovery copy in the key file), or the key file's, generated
// or given, and imported into the verifier if there is one. From here on a
// failure also undoes what was done to the key (builder.undo).
func (b *builder) key() error {
	if b.spec.origin() == KeyOriginPlatform {
		return b.platformKey()
	}
	return b.customerKey()
}

func (b *builder) platformKey() error {
	spec := b.spec
	if spec.KeyFile != "" {
		// Before the key is made, so that an unwritable place fails first.
		w, err := encrypt.NewKeyFileWriter(spec.KeyFile)
		if err != nil {
			return err
		}
		b.recovery = w
	}
	b.step("creating the disk key on the verifier")
	resp, err := b.register(keyregistry.CreateKeyRequest{Name: b.keyName, ReleasePolicy: string(b.policy), ReturnKey: true})
	if err != nil {
		return err
	}
	b.diskKey = resp.KeyMaterial
	if b.recovery != nil {
		if err := b.recovery.Commit(b.diskKey); err != nil {
			return err
		}
		b.wroteKey = true
		b.log.Info("wrote a recovery copy of the disk key", "key_file", spec.KeyFile)
	}
	return nil
}

func (b *builder) customerKey() (err error) {
	spec := b.spec
	if spec.GenerateKey {
		if b.diskKey, err = encrypt.CreateKeyFile(spec.KeyFile, spec.Rand); err != nil {
			return err
		}
		b.wroteKey = true
		b.log.Info("generated a new disk key", "key_file", spec.KeyFile)
	}
	if spec.Registry != nil {
		b.step("importing the disk key into the verifier")
		if _, err := b.register(keyregistry.CreateKeyRequest{Name: b.keyName, ReleasePolicy: string(b.policy), KeyMaterial: b.diskKey}); err != nil {
			return err
		}
	}
	return nil
}

// register creates the key on the verifier and checks that the answer is
// the key asked for.
func (b *builder) register(req keyregistry.CreateKeyRequest) (*keyregistry.KeyResponse, error) {
	resp, err := b.spec.Registry.CreateKey(b.ctx, req)
	var answer *keyregistry.Error
	switch {
	case err == nil:
	case errors.Is(err, keyregistry.ErrBadAnswer):
		b.registered = true // made, but not as asked: undone by builder.undo
		return nil, err
	case errors.As(err, &answer):
		return nil, err // refused: nothing made
	default:
		return nil, errors.Join(err, fmt.Errorf("%w: the verifier's answer was lost; check with: confidant-verifier admin key show %s",
			ErrKeyLeft, b.keyName))
	}
	b.registered = true
	if problems := b.answerProblems(req, resp); len(problems) > 0 {
		clear(resp.KeyMaterial)
		return nil, fmt.Errorf("registering key %s: %w: %s", b.keyName, keyregistry.ErrBadAnswer, strings.Join(problems, "; "))
	}
	b.m.KeyVersion = resp.Version
	b.log.Info("registered the disk key with the verifier", "key", b.keyName, "origin", resp.Key.Origin, "version", resp.Version)
	return resp, nil
}

// answerProblems lists how the verifier's answer differs from the request.
func (b *builder) answerProblems(req keyregistry.CreateKeyRequest, resp *keyregistry.KeyResponse) []string {
	var problems []string
	if resp.Key.Origin != b.spec.origin() {
		problems = append(problems, fmt.Sprintf("origin %q, want %q", resp.Key.Origin, b.spec.origin()))
	}
	if resp.Key.ReleasePolicySHA256 != b.m.ReleasePolicySHA256 {
		problems = append(problems, fmt.Sprintf("release policy sha256 %s, want %s", resp.Key.ReleasePolicySHA256, b.m.ReleasePolicySHA256))
	}
	if req.ReturnKey && len(resp.KeyMaterial) != encrypt.DiskKeySize {
		problems = append(problems, fmt.Sprintf("a key of %d bytes, want %d", len(resp.KeyMaterial), encrypt.DiskKeySize))
	}
	return problems
}

// deleteKey deletes the key the failed build registered.
func (b *builder) deleteKey() error {
	dctx, cancel := context.WithTimeout(context.WithoutCancel(b.ctx), deleteTimeout)
	defer cancel()
	if derr := b.spec.Registry.DeleteKey(dctx, b.keyName); derr != nil {
		return fmt.Errorf("%w: key %s stays registered, deleting it after the failure: %w (delete it with: confidant-verifier admin key delete %s)",
			ErrKeyLeft, b.keyName, derr, b.keyName)
	}
	b.log.Info("deleted the disk key from the verifier after the failure", "key", b.keyName)
	return nil
}

// checkKeyFree makes sure the verifier has no key of that name: a build
// registers a new key and never touches an existing one.
func checkKeyFree(ctx context.Context, reg Registry, name string) error {
	k, err := reg.GetKey(ctx, name)
	switch {
	case err == nil:
		return fmt.Errorf("key %s is already on the verifier (%s-managed, latest version %d); a build registers a new key: choose another key name or delete that key: %w",
			name, k.Origin, k.LatestVersion, keyregistry.ErrKeyExists)
	case errors.Is(err, keyregistry.ErrKeyUnknown):
		return nil
	default:
		return fmt.Errorf("asking the verifier whether key %s exists: %w", name, err)
	}
}
