// Package tokenservice gets fresh attestation tokens for workloads in the booted
// OS, after the agent has handed over: the `confidant-agent token` command
// and the unix-socket API (`GET /v1/token?audience=A[&nonce=N]` on
// /run/confidant/agent.sock).
//
// Each token comes from fresh evidence exactly as at boot — a challenge, the
// runtime data, the hardware report, the vTPM quote with the event log — but
// without a key release. The configuration and CA are the ones the boot
// left in /run/confidant (config.RunDir); the vTPM is /dev/tpmrm0 and the TEE
// interface is found again as the configuration says.
//
// A nonce the workload chooses goes into the runtime data's workload object
// as {"nonce": N}; the verifier copies that object into the token
// (runtime.data), so a relying party that sent the nonce knows the token is
// fresh.
package tokenservice

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/confidant-cvm/confidant/agent/internal/config"
	"github.com/confidant-cvm/confidant/agent/internal/quote"
	"github.com/confidant-cvm/confidant/agent/internal/vclient"
	"github.com/confidant-cvm/confidant/agent/internal/vtpm"
	"github.com/confidant-cvm/confidant/shared/tpm"
)

// ErrRequest: a token request is not acceptable (audience, nonce).
var ErrRequest = errors.New("invalid token request")

// Request limits.
const (
	MaxAudience = 256
	MaxNonce    = 256
)

// Request asks for a token.
type Request struct {
	// Audience is the relying party the token is for. Required.
	Audience string
	// Nonce, if not empty, is bound into the token as runtime.data.nonce.
	Nonce string
}

// Check reports what is wrong with r, matching ErrRequest.
func (r Request) Check() error {
	var errs []error
	switch {
	case r.Audience == "":
		errs = append(errs, errors.New("an audience is required"))
	case len(r.Audience) > MaxAudience || hasControl(r.Audience):
		errs = append(errs, fmt.Errorf("audience: at most %d bytes without control characters", MaxAudience))
	}
	if len(r.Nonce) > MaxNonce || hasControl(r.Nonce) {
		errs = append(errs, fmt.Errorf("nonce: at most %d bytes without control characters", MaxNonce))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", ErrRequest, err)
	}
	return nil
}

func hasControl(s string) bool {
	return strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f || r == '\uFFFD' })
}

// workload is the runtime data's workload object for r; nil without a
// nonce.
func (r Request) workload() (json.RawMessage, error) {
	if r.Nonce == "" {
		return nil, nil
	}
	return json.Marshal(map[string]string{"nonce": r.Nonce})
}

// Deps is what an Issuer needs. Zero values are documented per field.
type Deps struct {
	// Client talks to the verifier; each request asks it for its own
	// audience. Required.
	Client *vclient.Client
	// Quoter gets the hardware report. Required.
	Quoter vclient.Quoter
	// TPM quotes the PCRs. Required.
	TPM vclient.TPMAttester
	// RuntimeKey goes into the runtime data. Required.
	RuntimeKey vclient.RuntimeKey
	// EventLog reads the TCG event log; nil: vclient's default
	// (tpm.EventLogPath).
	EventLog func() ([]byte, error)
	// Retry bounds each request's retries (vclient.Retry's defaults).
	Retry vclient.Retry
	// Log receives details; nil: discarded. Tokens appear only as jti.
	Log *slog.Logger
}

// Issuer gets tokens, one at a time (the TPM and the TEE interface serve
// one request at a time). It is safe for concurrent use.
type Issuer struct {
	mu      sync.Mutex
	d       Deps
	log     *slog.Logger
	closers []io.Closer
}

// NewIssuer returns an Issuer using d. It closes nothing of d.
func NewIssuer(d Deps) *Issuer {
	log := d.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Issuer{d: d, log: log}
}

// Token gets a token for req from fresh evidence. The error matches
// ErrRequest for a bad request, and otherwise vclient's sentinels.
func (i *Issuer) Token(ctx context.Context, req Request) (string, error) {
	if err := req.Check(); err != nil {
		return "", err
	}
	wl, err := req.workload()
	if err != nil {
		return "", fmt.Errorf("encoding workload data: %w", err)
	}
	if i.d.Client == nil {
		return "", fmt.Errorf("%w: no verifier client", vclient.ErrConfig)
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	tok, err := vclient.Token(ctx, vclient.Deps{
		Client:     i.d.Client.WithAudience(req.Audience),
		Quoter:     i.d.Quoter,
		TPM:        i.d.TPM,
		RuntimeKey: i.d.RuntimeKey,
		EventLog:   i.d.EventLog,
		Workload:   wl,
		Retry:      i.d.Retry,
		Log:        i.log,
	})
	if err != nil {
		return "", err
	}
	return tok, nil
}

// Close closes what Open opened: the TEE interface and the vTPM.
func (i *Issuer) Close() error {
	i.mu.Lock()
	defer i.mu.Unlock()
	var errs []error
	for _, c := range i.closers {
		errs = append(errs, c.Close())
	}
	i.closers = nil
	return errors.Join(errs...)
}

// Options say where Open finds things. Zero values are documented per
// field.
type Options struct {
	// ConfigPath is the agent configuration (config.RunDir/config.RunConfigFile,
	// the copy the boot left).
	ConfigPath string
	// CAFile holds the verifier's CA certificates for https; "":
	// config.RunCAFile in ConfigPath's directory (the boot copies the CA
	// there; the configuration's ca_file names the initramfs's copy).
	CAFile string
	// CmdlinePath is the kernel command line that narrowed the
	// configuration at boot (/proc/cmdline).
	CmdlinePath string
	// TPMPath is the TPM device (vtpm.DefaultPath).
	TPMPath string
	// Log receives details; nil: discarded.
	Log *slog.Logger
}

// Open reads the configuration the boot left and opens what a token needs:
// the verifier client, the vTPM (an AK and a fresh runtime key) and the TEE
// interface. Close the Issuer when done.
func Open(ctx context.Context, opts Options) (*Issuer, error) {
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.ConfigPath == "" {
		opts.ConfigPath = filepath.Join(config.RunDir, config.RunConfigFile)
	}
	if opts.CAFile == "" {
		opts.CAFile = filepath.Join(filepath.Dir(opts.ConfigPath), config.RunCAFile)
	}
	if opts.CmdlinePath == "" {
		opts.CmdlinePath = "/proc/cmdline"
	}
	cfg, err := LoadConfig(opts.ConfigPath, opts.CmdlinePath)
	if err != nil {
		return nil, err
	}
	var pool *x509.CertPool
	if cfg.VerifierURL.Scheme == "https" {
		if pool, err = vclient.LoadCAFile(opts.CAFile); err != nil {
			return nil, err
		}
	}
	client, err := vclient.New(vclient.Config{
		URL: cfg.VerifierURL, RootCAs: pool, AllowPlainHTTP: cfg.AllowPlainHTTP, Log: log,
	})
	if err != nil {
		return nil, err
	}
	src, err := quote.Detect(quote.Options{TEE: cfg.TEE, SimPort: cfg.SimPort})
	if err != nil {
		return nil, fmt.Errorf("opening TEE interface: %w", err)
	}
	dev, err := vtpm.Open(ctx, opts.TPMPath, cfg.DeviceTimeout)
	if err != nil {
		src.Close()
		return nil, err
	}
	i := NewIssuer(Deps{
		Client: client, Quoter: src, TPM: dev.AK, RuntimeKey: dev.RuntimeKey,
		EventLog: func() ([]byte, error) { return vclient.ReadEventLog(tpm.EventLogPath) },
		Retry:    vclient.Retry{Budget: cfg.RetryBudget},
		Log:      log,
	})
	i.closers = []io.Closer{src, dev}
	return i, nil
}

// LoadConfig reads and validates the agent configuration at path, narrowed
// by the kernel command line at cmdlinePath as at boot. The command line
// keys the configuration ignores were reported at boot and are not again.
func LoadConfig(path, cmdlinePath string) (*config.Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading agent configuration: %w", err)
	}
	cmdline, err := os.ReadFile(cmdlinePath)
	if err != nil {
		return nil, fmt.Errorf("reading kernel command line: %w", err)
	}
	return config.Parse(data, string(cmdline), slog.New(slog.DiscardHandler))
}
