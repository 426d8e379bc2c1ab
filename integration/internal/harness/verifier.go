package harness

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// VerifierConfig is one confidant-verifier serve.
type VerifierConfig struct {
	// Bin is confidant-verifier.
	Bin string
	// Dir holds the verifier's state (SQLite store, KEK), its log and its
	// admin socket. Keep it short (unix socket path limit).
	Dir string
	// Port is the loopback port to serve on; the guest reaches it at
	// GuestVerifierIP:Port.
	Port int
	// Policies are the appraisal policies (Rego).
	Policies []string
	// ReferenceValues is the reference values file.
	ReferenceValues string
	// SimRoot is the simulated secure processor's root certificate (PEM
	// file) to trust.
	SimRoot string
	// TLS, when set, makes the verifier serve HTTPS with these files.
	TLS *TLSFiles
	// ExtraArgs are more serve flags.
	ExtraArgs []string
}

// Verifier is a running confidant-verifier.
type Verifier struct {
	Config VerifierConfig
	// URL is the base URL on the host.
	URL string
	// GuestURL is the base URL as the guest reaches it.
	GuestURL string
	proc     *Process
	client   *http.Client
	// exports counts the audit exports left by Stop; exportErr is the
	// last export's failure.
	exports   int
	exportErr error
}

// FreePort returns a loopback TCP port nobody listens on right now.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// NewVerifier prepares a verifier (directories, URLs) without starting it.
func NewVerifier(cfg VerifierConfig) (*Verifier, error) {
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating verifier directory: %w", err)
	}
	scheme := "http"
	tr := &http.Transport{}
	if cfg.TLS != nil {
		scheme = "https"
		tc, err := cfg.TLS.ClientConfig()
		if err != nil {
			return nil, err
		}
		tr.TLSClientConfig = tc
	}
	port := strconv.Itoa(cfg.Port)
	return &Verifier{
		Config:   cfg,
		URL:      scheme + "://127.0.0.1:" + port,
		GuestURL: scheme + "://" + GuestVerifierIP + ":" + port,
		client:   &http.Client{Transport: tr, Timeout: 5 * time.Second},
	}, nil
}

// Addr is host:port of the verifier on the host, for hostd's guest spec.
func (v *Verifier) Addr() string { return "127.0.0.1:" + strconv.Itoa(v.Config.Port) }

// StateDir is where the verifier keeps its store and KEK.
func (v *Verifier) StateDir() string { return filepath.Join(v.Config.Dir, "state") }

// LogPath is the verifier's log file (appended across restarts).
func (v *Verifier) LogPath() string { return filepath.Join(v.Config.Dir, "verifier.log") }

func (v *Verifier) serveArgs() []string {
	c := v.Config
	args := []string{"serve", "--state-dir", v.StateDir(),
		"--listen", v.Addr(), "--reference-values", c.ReferenceValues,
		"--sim-root", c.SimRoot, "--rate-limit", "0"}
	for _, p := range c.Policies {
		args = append(args, "--policy", p)
	}
	if c.TLS != nil {
		args = append(args, "--tls-cert", c.TLS.Cert, "--tls-key", c.TLS.Key)
	}
	return append(args, c.ExtraArgs...)
}

// Start starts the verifier and waits until /readyz answers 200.
func (v *Verifier) Start(ctx context.Context) error {
	if v.proc != nil {
		if exited, _ := v.proc.Exited(); !exited {
			return errors.New("verifier already running")
		}
	}
	p, err := StartProcess("confidant-verifier", v.LogPath(), v.Config.Bin, v.serveArgs()...)
	if err != nil {
		return err
	}
	v.proc = p
	deadline := time.Now().Add(60 * time.Second)
	var last error
	for {
		last = v.ready(ctx)
		if last == nil {
			return nil
		}
		if exited, werr := p.Exited(); exited {
			return fmt.Errorf("confidant-verifier: %w (%v)\n%s", ErrExited, werr, p.Log(4000))
		}
		if time.Now().After(deadline) {
			_ = p.Stop(5 * time.Second)
			return fmt.Errorf("confidant-verifier not ready within 60s: %w\n%s", last, p.Log(4000))
		}
		select {
		case <-ctx.Done():
			_ = p.Stop(5 * time.Second)
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (v *Verifier) ready(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, v.URL+"/readyz", nil)
	if err != nil {
		return err
	}
	resp, err := v.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("readyz: %s: %s", resp.Status, body)
	}
	return nil
}

// Stop stops the verifier (SIGTERM, then kill). A running verifier first
// exports its audit log into its directory, for Lab.ScanSecrets; a failed
// export is kept in ExportErr, not returned.
func (v *Verifier) Stop() error {
	if v.proc == nil {
		return nil
	}
	if v.Running() {
		v.exportErr = v.exportAudit()
	}
	return v.proc.Stop(20 * time.Second)
}

// ExportErr is the failure of the audit export made by the last Stop.
func (v *Verifier) ExportErr() error { return v.exportErr }

// Running reports whether the verifier process runs.
func (v *Verifier) Running() bool {
	if v.proc == nil {
		return false
	}
	exited, _ := v.proc.Exited()
	return !exited
}

// Log returns the verifier's log (the last max bytes; 0: all).
func (v *Verifier) Log(max int) string {
	if v.proc == nil {
		return "(verifier never started)"
	}
	return v.proc.Log(max)
}

// HTTPClient is a client that trusts the verifier's CA.
func (v *Verifier) HTTPClient() *http.Client { return v.client }
