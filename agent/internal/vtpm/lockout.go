package vtpm

import (
	"errors"
	"fmt"

	"github.com/google/go-tpm/legacy/tpm2"

	"github.com/confidant-cvm/confidant/shared/tpm"
)

// ErrLockout: the vTPM answered TPM_RC_LOCKOUT. Its text is the console
// line that names the condition and the remedy.
var ErrLockout = errors.New("vTPM is in dictionary-attack lockout " +
	"(TPM_RC_LOCKOUT: after repeated unclean shutdowns or failed authorizations it refuses keys without noDA); " +
	"remedy: boot an image whose agent makes only noDA keys (any current confidant-agent), " +
	"or clear the lockout with TPM2_DictionaryAttackLockReset under the lockout authorization " +
	"(tpm2_dictionarylockout --clear-lockout); the VM and its vTPM need not be deleted")

// IsLockout reports whether err is, or wraps, a TPM_RC_LOCKOUT answer.
func IsLockout(err error) bool {
	var w tpm2.Warning
	return errors.As(err, &w) && w.Code == tpm2.RCLockout
}

// explain returns err with ErrLockout in front when the TPM answered
// TPM_RC_LOCKOUT, else err unchanged (nil stays nil).
func explain(err error) error {
	if err == nil || errors.Is(err, ErrLockout) || !IsLockout(err) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrLockout, err)
}

// AK is the attestation key of a Device: a tpm.Attester whose errors name a
// dictionary-attack lockout (ErrLockout).
type AK struct{ *tpm.Attester }

// Attest quotes the PCRs (tpm.Attester.Attest).
func (a AK) Attest(extraData, eventLog []byte) ([]byte, error) {
	out, err := a.Attester.Attest(extraData, eventLog)
	return out, explain(err)
}

// RuntimeKey is the runtime key of a Device: a tpm.DecryptKey whose errors
// name a dictionary-attack lockout (ErrLockout).
type RuntimeKey struct{ *tpm.DecryptKey }

// Decrypt decrypts inside the vTPM (tpm.DecryptKey.Decrypt).
func (k RuntimeKey) Decrypt(ciphertext []byte) ([]byte, error) {
	out, err := k.DecryptKey.Decrypt(ciphertext)
	return out, explain(err)
}
