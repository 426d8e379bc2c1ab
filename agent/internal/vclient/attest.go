package vclient

import (
	"context"
	"crypto"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/confidant-cvm/confidant/shared/evidence"
	"github.com/confidant-cvm/confidant/shared/keywrap"
	"github.com/confidant-cvm/confidant/shared/tpm"
)

// Quoter produces the hardware evidence (agent/internal/quote's providers
// implement it).
type Quoter interface {
	Kind() evidence.Kind
	Quote(ctx context.Context, reportData [64]byte) (report, certTable []byte, err error)
}

// TPMAttester quotes the vTPM's PCRs with the AK (*tpm.Attester implements
// it).
type TPMAttester interface {
	AKPublic() crypto.PublicKey
	Attest(extraData, eventLog []byte) ([]byte, error)
}

// RuntimeKey is the runtime key that lives in the vTPM (*tpm.DecryptKey
// implements it).
type RuntimeKey interface {
	Public() *rsa.PublicKey
	Decrypt(ciphertext []byte) ([]byte, error)
}

// OAEPDecrypter adapts the runtime key to keywrap.Unwrap: the JWE's content
// encryption key is decrypted inside the vTPM.
func OAEPDecrypter(k RuntimeKey) keywrap.OAEPDecrypter {
	return keywrap.OAEPDecrypterFunc(k.Decrypt)
}

// maxEventLog bounds the event log read: it must fit the envelope's TPM
// evidence with the quotes.
const maxEventLog = evidence.MaxTPMSize - 64<<10

// ReadEventLog reads the firmware's TCG event log (tpm.EventLogPath, on the
// securityfs the boot flow mounted).
func ReadEventLog(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading TPM event log: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxEventLog+1))
	if err != nil {
		return nil, fmt.Errorf("reading TPM event log: %w", err)
	}
	if len(b) > maxEventLog {
		return nil, fmt.Errorf("reading TPM event log: larger than %d bytes", maxEventLog)
	}
	return b, nil
}

// Deps is what Attest needs. Zero values are documented per field.
type Deps struct {
	// Client talks to the verifier. Required.
	Client *Client
	// Quoter gets the hardware report. Required.
	Quoter Quoter
	// TPM quotes the PCRs; its AK goes into the runtime data. Required.
	TPM TPMAttester
	// RuntimeKey is the key the released key is wrapped to. Required.
	RuntimeKey RuntimeKey
	// EventLog returns the TCG event log; nil: ReadEventLog(tpm.EventLogPath).
	EventLog func() ([]byte, error)
	// KeyName names the key to release. Required by Attest and
	// Session.Release; Token does not use it.
	KeyName string
	// Workload is the runtime data's optional workload object.
	Workload json.RawMessage
	// Retry bounds the retries; see Retry for its defaults.
	Retry Retry
	// Clock is the retries' clock; nil: RealClock.
	Clock Clock
	// Jitter draws a backoff in [0, ceil]; nil: FullJitter.
	Jitter func(ceil time.Duration) time.Duration
	// Progress is called once per attempt; nil: nothing.
	Progress func(Attempt)
	// Log receives details; nil: discarded. Tokens appear only as jti and
	// exp, keys and JWEs never.
	Log *slog.Logger
}

func (d *Deps) check(needKey bool) error {
	var errs []error
	for name, missing := range map[string]bool{
		"verifier client": d.Client == nil, "hardware evidence provider": d.Quoter == nil,
		"TPM attester": d.TPM == nil, "runtime key": d.RuntimeKey == nil,
	} {
		if missing {
			errs = append(errs, fmt.Errorf("no %s", name))
		}
	}
	if needKey && d.KeyName == "" {
		errs = append(errs, errors.New("no key name"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	return nil
}

// Attest gets the guest attested and the key released:
//
//  1. a challenge from the verifier;
//  2. the runtime data (nonce, AK, runtime key) and its encoding;
//  3. the hardware report with REPORT_DATA = SHA-512(runtime data);
//  4. the vTPM quote with extraData = SHA-256(runtime data) and the event
//     log;
//  5. the envelope posted for a token;
//  6. the key released to the token as a JWE to the runtime key;
//  7. the JWE opened with the runtime key inside the vTPM.
//
// Steps 1-5 are retried together (a new challenge for each attempt, since
// the verifier spends a nonce even on a failed appraisal), step 6 alone,
// both under one time budget. Failing evidence collection, a denial and
// every other final answer end Attest at once. The error matches the
// sentinel of the step that failed (ErrChallenge, ErrEvidence, ErrAttest
// with ErrAttestDenied, ErrRelease, ErrUnwrap) and ErrBudgetExhausted when
// the retries ran out; an *APIError in it holds the verifier's answer.
//
// It is Begin, Session.Token and Session.Release in one call. The caller
// zeroes the returned key when done with it.
func Attest(ctx context.Context, d Deps) (token string, key []byte, err error) {
	if err := d.check(true); err != nil {
		return "", nil, err
	}
	s, err := Begin(d)
	if err != nil {
		return "", nil, err
	}
	token, err = s.Token(ctx)
	if err != nil {
		return "", nil, err
	}
	key, err = s.Release(ctx, token)
	if err != nil {
		return "", nil, err
	}
	return token, key, nil
}

// Token gets the guest attested for a token (steps 1-5 of Attest), without
// a key release: for workloads asking for a fresh token after boot. Deps'
// KeyName is not used.
func Token(ctx context.Context, d Deps) (string, error) {
	s, err := Begin(d)
	if err != nil {
		return "", err
	}
	return s.Token(ctx)
}

// Session is one attestation under one retry budget, in two steps that a
// caller may report apart: Token (challenge, evidence, attest) and Release
// (key release and unwrapping). It is not safe for concurrent use.
type Session struct {
	d        Deps
	log      *slog.Logger
	progress func(Attempt)
	r        *retrier
}

// Begin checks d (all but KeyName, which only Release needs) and starts the
// retry budget: Token and Release share it from now on.
func Begin(d Deps) (*Session, error) {
	if err := d.check(false); err != nil {
		return nil, err
	}
	log := d.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	clock := d.Clock
	if clock == nil {
		clock = RealClock{}
	}
	jitter := d.Jitter
	if jitter == nil {
		jitter = FullJitter
	}
	progress := d.Progress
	if progress == nil {
		progress = func(Attempt) {}
	}
	policy := d.Retry.withDefaults()
	start := clock.Now()
	return &Session{
		d: d, log: log, progress: progress,
		r: &retrier{
			policy: policy, clock: clock, jitter: jitter, progress: progress,
			timeout: d.Client.Timeout(), start: start, deadline: start.Add(policy.Budget),
		},
	}, nil
}

// Token reads the event log and exchanges fresh evidence for a token
// (steps 1-5 of Attest), retrying under the session's budget. The error
// matches ErrEvidence, ErrChallenge or ErrAttest (with ErrAttestDenied for
// a 403), and ErrBudgetExhausted when the retries ran out.
func (s *Session) Token(ctx context.Context) (string, error) {
	readLog := s.d.EventLog
	if readLog == nil {
		readLog = func() ([]byte, error) { return ReadEventLog(tpm.EventLogPath) }
	}
	eventLog, err := readLog()
	if err != nil {
		s.progress(Attempt{Stage: stepEvidence.name, Number: 1, Err: err})
		return "", fmt.Errorf("%w: %w", ErrEvidence, err)
	}
	var token string
	err = s.r.run(ctx, stepChallenge, func(ctx context.Context) (step, string, error) {
		ch, err := s.d.Client.Challenge(ctx)
		if err != nil {
			return stepChallenge, "", err
		}
		body, err := collect(ctx, s.d, ch.Nonce, eventLog)
		if err != nil {
			return stepEvidence, "", err
		}
		tok, err := s.d.Client.SubmitEvidence(ctx, body)
		if err != nil {
			var apiErr *APIError
			if errors.As(err, &apiErr) && apiErr.Status == http.StatusForbidden {
				err = fmt.Errorf("%w: %w", ErrAttestDenied, err)
			}
			return stepAttest, "", err
		}
		info, _ := parseTokenInfo(tok) // checked by SubmitEvidence
		s.log.Info("token received", "jti", info.ID, "exp", info.Expiry)
		token = tok
		return stepAttest, fmt.Sprintf("token %s, expires %s", info.ID, info.Expiry.Format(time.RFC3339)), nil
	})
	if err != nil {
		return "", err
	}
	return token, nil
}

// Release gets Deps' KeyName released to token (step 6 of Attest, retried
// under what is left of the session's budget) and opens the JWE with the
// runtime key (step 7). The error matches ErrRelease or ErrUnwrap (and
// ErrBudgetExhausted when the retries ran out). The caller zeroes the
// returned key when done with it.
func (s *Session) Release(ctx context.Context, token string) ([]byte, error) {
	if err := s.d.check(true); err != nil {
		return nil, err
	}
	var jwe []byte
	err := s.r.run(ctx, stepRelease, func(ctx context.Context) (step, string, error) {
		b, err := s.d.Client.ReleaseKey(ctx, s.d.KeyName, token)
		if err != nil {
			return stepRelease, "", err
		}
		jwe = b
		return stepRelease, fmt.Sprintf("key %q released (JWE of %d bytes)", s.d.KeyName, len(b)), nil
	})
	if err != nil {
		return nil, err
	}
	s.log.Debug("key released", "key", s.d.KeyName, "jwe_bytes", len(jwe))

	key, err := keywrap.Unwrap(jwe, OAEPDecrypter(s.d.RuntimeKey))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnwrap, err)
	}
	if len(key) == 0 {
		return nil, fmt.Errorf("%w: the released key is empty", ErrUnwrap)
	}
	return key, nil
}

// collect makes the runtime data for nonce and the evidence bound to it, and
// returns the encoded envelope.
func collect(ctx context.Context, d Deps, nonce, eventLog []byte) ([]byte, error) {
	rd, err := evidence.NewRuntimeData(nonce, d.TPM.AKPublic(), d.RuntimeKey.Public(), d.Workload)
	if err != nil {
		return nil, fmt.Errorf("making runtime data: %w", err)
	}
	rdBytes, err := rd.Marshal()
	if err != nil {
		return nil, fmt.Errorf("making runtime data: %w", err)
	}
	report, certTable, err := d.Quoter.Quote(ctx, evidence.ReportData(rdBytes))
	if err != nil {
		return nil, err
	}
	extra := evidence.TPMNonce(rdBytes)
	att, err := d.TPM.Attest(extra[:], eventLog)
	if err != nil {
		return nil, err
	}
	env := evidence.Envelope{
		Version:     evidence.Version,
		TEE:         d.Quoter.Kind(),
		RuntimeData: rdBytes,
		Report:      report,
		CertTable:   certTable,
		TPM:         att,
	}
	return env.Encode()
}
