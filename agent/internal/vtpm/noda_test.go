//go:build cgo

package vtpm

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/google/go-tpm-tools/client"
	"github.com/google/go-tpm-tools/simulator"
	"github.com/google/go-tpm/legacy/tpm2"
	"github.com/google/go-tpm/tpmutil"

	"github.com/confidant-cvm/confidant/shared/tpm"
)

// getSimulator returns a freshly manufactured TPM simulator (one per
// process at a time); the test closes it unless a Device took it.
func getSimulator(t *testing.T) *simulator.Simulator {
	t.Helper()
	s, err := simulator.Get()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !s.IsClosed() {
			s.Close()
		}
	})
	return s
}

// transientPublics reads the public area of every transient object loaded
// in the TPM: every key the Device made.
func transientPublics(t *testing.T, rw io.ReadWriter) map[tpmutil.Handle]tpm2.Public {
	t.Helper()
	vals, _, err := tpm2.GetCapability(rw, tpm2.CapabilityHandles, 64, uint32(tpm2.TransientFirst))
	if err != nil {
		t.Fatalf("listing transient handles: %v", err)
	}
	pubs := make(map[tpmutil.Handle]tpm2.Public)
	for _, v := range vals {
		h, ok := v.(tpmutil.Handle)
		if !ok {
			t.Fatalf("GetCapability(handles) returned a %T", v)
		}
		pub, _, _, err := tpm2.ReadPublic(rw, h)
		if err != nil {
			t.Fatalf("ReadPublic(%#x): %v", h, err)
		}
		pubs[h] = pub
	}
	return pubs
}

// TestKeysAreNoDA: every key the agent makes in the vTPM, read back from
// the TPM's own public area, has noDA set.
func TestKeysAreNoDA(t *testing.T) {
	s := getSimulator(t)
	if n := len(transientPublics(t, s)); n != 0 {
		t.Fatalf("%d transient objects before New", n)
	}
	d, err := New(s)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	pubs := transientPublics(t, s)
	if len(pubs) != 2 {
		t.Fatalf("New left %d keys in the TPM, want 2 (AK and runtime key)", len(pubs))
	}
	signers := 0
	for h, pub := range pubs {
		if pub.Attributes&tpm2.FlagNoDA == 0 {
			t.Errorf("key %#x (attributes %#x) lacks noDA", h, uint32(pub.Attributes))
		}
		if pub.Attributes&tpm2.FlagSign != 0 {
			signers++
		}
	}
	if signers != 1 {
		t.Errorf("%d signing keys, want the AK only", signers)
	}
	if tpm.AKTemplate().Attributes&tpm2.FlagNoDA == 0 {
		t.Error("tpm.AKTemplate lacks noDA")
	}
}

// lockOut puts the TPM into dictionary-attack lockout the way a guest meets
// it: maxTries failed authorizations of a DA-protected key. (On swtpm an
// unclean shutdown after a DA-protected key was used counts as one; the
// end-to-end test reproduces that.) It returns the DA-protected key.
func lockOut(t *testing.T, rw io.ReadWriter) tpmutil.Handle {
	t.Helper()
	lockoutAuth := tpm2.AuthCommand{Session: tpm2.HandlePasswordSession, Attributes: tpm2.AttrContinueSession}
	if err := tpm2.DictionaryAttackParameters(rw, lockoutAuth, 1, 3600, 3600); err != nil {
		t.Fatalf("setting maxTries 1: %v", err)
	}
	tmpl := client.AKTemplateECC() // DA-protected, as the AK was before noDA
	tmpl.Attributes &^= tpm2.FlagRestricted
	h, _, err := tpm2.CreatePrimary(rw, tpm2.HandleOwner, tpm2.PCRSelection{}, "", "the key's password", tmpl)
	if err != nil {
		t.Fatalf("creating a DA-protected key: %v", err)
	}
	digest := sha256.Sum256([]byte("x"))
	_, err = tpm2.Sign(rw, h, "a wrong password", digest[:], nil, &tpm2.SigScheme{Alg: tpm2.AlgECDSA, Hash: tpm2.AlgSHA256})
	if err == nil {
		t.Fatal("signing with a wrong password succeeded")
	}
	if IsLockout(err) {
		t.Fatalf("the first failure already answered lockout: %v", err)
	}
	if n := lockoutCounter(t, rw); n < 1 {
		t.Fatalf("lockout counter %d after a failed authorization", n)
	}
	// The lockout is in force: even the right password is refused.
	if _, err := tpm2.Sign(rw, h, "the key's password", digest[:], nil, &tpm2.SigScheme{Alg: tpm2.AlgECDSA, Hash: tpm2.AlgSHA256}); !IsLockout(err) {
		t.Fatalf("signing with the right password in lockout = %v, want TPM_RC_LOCKOUT", err)
	}
	return h
}

func lockoutCounter(t *testing.T, rw io.ReadWriter) uint32 {
	t.Helper()
	vals, _, err := tpm2.GetCapability(rw, tpm2.CapabilityTPMProperties, 1, uint32(tpm2.LockoutCounter))
	if err != nil || len(vals) == 0 {
		t.Fatalf("reading TPM_PT_LOCKOUT_COUNTER: %v", err)
	}
	p, ok := vals[0].(tpm2.TaggedProperty)
	if !ok || p.Tag != tpm2.LockoutCounter {
		t.Fatalf("TPM_PT_LOCKOUT_COUNTER: got %#v", vals[0])
	}
	return p.Value
}

// TestKeysWorkInLockout: with the vTPM in dictionary-attack lockout, the
// agent still makes its keys, quotes, and decrypts — what a guest needs to
// attest and unlock its disk.
func TestKeysWorkInLockout(t *testing.T) {
	s := getSimulator(t)
	lockOut(t, s)

	// A DA-protected AK (the template before noDA) cannot quote now, and
	// the error names the lockout and its remedy.
	old, err := client.NewKey(s, tpm2.HandleOwner, client.AKTemplateECC())
	if err != nil {
		t.Fatalf("creating the old AK: %v", err)
	}
	_, err = old.Attest(client.AttestOpts{Nonce: []byte("nonce"), TCGEventLog: []byte{}, SkipTeeAttestation: true})
	old.Close()
	if !IsLockout(err) {
		t.Fatalf("quote with a DA-protected AK in lockout = %v, want TPM_RC_LOCKOUT", err)
	}
	if err := explain(err); !errors.Is(err, ErrLockout) || !strings.Contains(err.Error(), "remedy:") {
		t.Errorf("explain(%v) does not name the lockout and its remedy", err)
	}

	d, err := New(s)
	if err != nil {
		t.Fatalf("New in lockout: %v", err)
	}
	defer d.Close()
	extra := sha256.Sum256([]byte("runtime data"))
	att, err := d.AK.Attest(extra[:], nil)
	if err != nil {
		t.Fatalf("Attest in lockout: %v", err)
	}
	if _, err := tpm.Verify(att, d.AK.AKPublic(), extra[:], tpm.Options{AllowEmptyEventLog: true}); err != nil {
		t.Errorf("the quote made in lockout does not verify: %v", err)
	}
	msg := []byte("released key")
	ct, err := rsa.EncryptOAEP(sha256.New(), rand.Reader, d.RuntimeKey.Public(), msg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if pt, err := d.RuntimeKey.Decrypt(ct); err != nil || string(pt) != string(msg) {
		t.Fatalf("Decrypt in lockout = %q, %v", pt, err)
	}
	if n := lockoutCounter(t, s); n < 1 {
		t.Errorf("lockout counter %d: the TPM left lockout during the test", n)
	}
}
