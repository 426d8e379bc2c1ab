package tpm

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/google/go-tpm-tools/client"
	attestpb "github.com/google/go-tpm-tools/proto/attest"
	"github.com/google/go-tpm/legacy/tpm2"
	"google.golang.org/protobuf/proto"
)

// EventLogPath is where Linux exposes the firmware's TCG event log. The agent
// mounts securityfs on /sys/kernel/security first (the initramfs has no one
// to do it), reads this file and passes its bytes to [Attester.Attest].
const EventLogPath = "/sys/kernel/security/tpm0/binary_bios_measurements"

// MaxExtraDataSize is the largest extraData a TPM accepts in a quote
// (TPM2B_DATA holds at most one digest of the largest supported hash).
const MaxExtraDataSize = 64

// Attester quotes the vTPM's PCRs with an attestation key (AK) held in the
// TPM. It is the guest half of [Verify].
//
// The AK is an ECC NIST P-256 restricted signing key (ECDSA with SHA-256)
// created as a transient primary key in the owner hierarchy from
// [AKTemplate]: go-tpm-tools' AKTemplateECC with noDA set. Primary keys are
// derived from the hierarchy seed, so one vTPM gives the same AK every boot
// until its owner seed changes; nothing is written to the TPM's NV memory.
//
// Every key the guest makes is noDA (exempt from dictionary-attack
// protection). A DA-protected key would make the TPM count each unclean
// shutdown (a forced stop after the key was used) as a failed authorization;
// after maxTries of them (3 on swtpm) the TPM refuses the key with
// TPM_RC_LOCKOUT and the guest can no longer attest. The keys' authorization
// is empty, so DA protection would guard nothing.
//
// An Attester is not safe for concurrent use: it issues TPM commands on rw.
type Attester struct {
	rw io.ReadWriter
	ak *client.Key
}

// NewAttester creates the AK in the TPM behind rw. The caller keeps
// ownership of rw and closes it after [Attester.Close].
func NewAttester(rw io.ReadWriter) (*Attester, error) {
	if rw == nil {
		return nil, errors.New("creating attestation key: no TPM")
	}
	ak, err := client.NewKey(rw, tpm2.HandleOwner, AKTemplate())
	if err != nil {
		return nil, fmt.Errorf("creating attestation key: %w", err)
	}
	return &Attester{rw: rw, ak: ak}, nil
}

// AKTemplate is the AK's template: go-tpm-tools' AKTemplateECC (fixedTPM,
// fixedParent, sensitiveDataOrigin, userWithAuth, restricted, sign; P-256,
// ECDSA with SHA-256) with noDA added.
func AKTemplate() tpm2.Public {
	t := client.AKTemplateECC()
	t.Attributes |= tpm2.FlagNoDA
	return t
}

// AKPublic returns the public half of the AK (an *ecdsa.PublicKey). The agent
// puts it, as a JWK, into the runtime data so the verifier can pass it to
// [Verify].
func (a *Attester) AKPublic() crypto.PublicKey {
	return a.ak.PublicKey()
}

// Attest quotes every allocated PCR bank with extraData (1 to
// [MaxExtraDataSize] bytes; the design uses SHA-256 of the runtime data) and
// returns the marshalled go-tpm-tools attest.Attestation protobuf holding the
// AK public area, one quote per bank with its PCR values, and eventLog.
//
// eventLog is the raw TCG PC Client event log (see [EventLogPath]); it is
// stored as given and never read from the system implicitly, so nil means an
// attestation without a log, which [Verify] rejects unless
// [Options.AllowEmptyEventLog] is set. No TEE report is attached: the agent
// collects the hardware report itself.
func (a *Attester) Attest(extraData, eventLog []byte) ([]byte, error) {
	if len(extraData) == 0 || len(extraData) > MaxExtraDataSize {
		return nil, fmt.Errorf("attesting: extraData is %d bytes, want 1 to %d", len(extraData), MaxExtraDataSize)
	}
	if eventLog == nil {
		// A nil TCGEventLog would make go-tpm-tools read the system's log.
		eventLog = []byte{}
	}
	var att *attestpb.Attestation
	var err error
	for try := 1; ; try++ {
		att, err = a.ak.Attest(client.AttestOpts{
			Nonce:              extraData,
			TCGEventLog:        eventLog,
			SkipTeeAttestation: true,
		})
		if err == nil || !pcrsMovedDuringQuote(err) || try == maxQuoteTries {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("attesting: %w", err)
	}
	out, err := proto.Marshal(att)
	if err != nil {
		return nil, fmt.Errorf("marshalling attestation: %w", err)
	}
	return out, nil
}

// maxQuoteTries bounds the quotes of one Attest that a PCR extended in
// between spoils.
const maxQuoteTries = 5

// pcrsMovedDuringQuote reports go-tpm-tools' check that the PCR values it
// read after the quote are the ones quoted: a PCR was extended in between.
// Under Secure Boot the kernel's IMA architecture policy extends PCR 10 for
// every module it loads, and the agent loads modules while it attests.
// go-tpm-tools has no typed error for it (quote/quote.go
// validatePCRDigest), hence the message.
func pcrsMovedDuringQuote(err error) bool {
	return strings.Contains(err.Error(), "given PCRs digest not matching")
}

// Close flushes the AK from the TPM. It does not close the TPM itself.
func (a *Attester) Close() error {
	a.ak.Close()
	return nil
}

// DecryptKey is an RSA-2048 decryption key that lives only in the TPM: it is
// created there, is fixedTPM and fixedParent (it can never be duplicated or
// exported), is noDA (see [Attester]), is not a signing key and not
// restricted, and its scheme is pinned to RSAES-OAEP with SHA-256, so the TPM
// refuses raw RSA or PKCS#1 v1.5 decryption with it. It is fresh on every call to [NewDecryptionKey] (the
// template's unique field is random) and disappears when flushed or when the
// TPM restarts. It is the agent's runtime key: the verifier encrypts the
// released disk key to it (JWE RSA-OAEP-256).
//
// A DecryptKey is not safe for concurrent use.
type DecryptKey struct {
	rw  io.ReadWriter
	key *client.Key
	pub *rsa.PublicKey
}

// decryptScheme is the only scheme the runtime key decrypts with.
var decryptScheme = &tpm2.AsymScheme{Alg: tpm2.AlgOAEP, Hash: tpm2.AlgSHA256}

// NewDecryptionKey creates a fresh runtime key in the TPM behind rw. The
// caller keeps ownership of rw.
func NewDecryptionKey(rw io.ReadWriter) (*DecryptKey, error) {
	if rw == nil {
		return nil, errors.New("creating decryption key: no TPM")
	}
	unique := make([]byte, 256)
	if _, err := rand.Read(unique); err != nil {
		return nil, fmt.Errorf("creating decryption key: %w", err)
	}
	template := tpm2.Public{
		Type:    tpm2.AlgRSA,
		NameAlg: tpm2.AlgSHA256,
		Attributes: tpm2.FlagDecrypt | tpm2.FlagFixedTPM | tpm2.FlagFixedParent |
			tpm2.FlagSensitiveDataOrigin | tpm2.FlagUserWithAuth | tpm2.FlagNoDA,
		RSAParameters: &tpm2.RSAParams{
			Sign:       &tpm2.SigScheme{Alg: decryptScheme.Alg, Hash: decryptScheme.Hash},
			KeyBits:    2048,
			ModulusRaw: unique,
		},
	}
	key, err := client.NewKey(rw, tpm2.HandleOwner, template)
	if err != nil {
		return nil, fmt.Errorf("creating decryption key: %w", err)
	}
	pub, ok := key.PublicKey().(*rsa.PublicKey)
	if !ok {
		key.Close()
		return nil, fmt.Errorf("creating decryption key: TPM returned a %T", key.PublicKey())
	}
	return &DecryptKey{rw: rw, key: key, pub: pub}, nil
}

// Public returns the public half of the runtime key.
func (k *DecryptKey) Public() *rsa.PublicKey {
	return k.pub
}

// Decrypt runs TPM2_RSA_Decrypt with RSAES-OAEP, SHA-256 and an empty label
// (what rsa.EncryptOAEP(sha256.New(), rand, pub, msg, nil) and JWE
// RSA-OAEP-256 produce).
func (k *DecryptKey) Decrypt(ciphertext []byte) ([]byte, error) {
	if len(ciphertext) != k.pub.Size() {
		return nil, fmt.Errorf("decrypting in TPM: ciphertext is %d bytes, want %d", len(ciphertext), k.pub.Size())
	}
	out, err := tpm2.RSADecrypt(k.rw, k.key.Handle(), "", ciphertext, decryptScheme, "")
	if err != nil {
		return nil, fmt.Errorf("decrypting in TPM: %w", err)
	}
	return out, nil
}

// Close flushes the key from the TPM; it cannot decrypt afterwards. It does
// not close the TPM itself.
func (k *DecryptKey) Close() error {
	k.key.Close()
	return nil
}
