//go:build cgo

package tokenservice

import (
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/confidant-cvm/confidant/agent/internal/quote"
	"github.com/confidant-cvm/confidant/agent/internal/vclient"
	"github.com/confidant-cvm/confidant/agent/internal/vclient/vclienttest"
	"github.com/confidant-cvm/confidant/agent/internal/vtpm"
	"github.com/confidant-cvm/confidant/shared/tee/snp/sim"
)

// The test binary's guest: one TPM simulator per process with a recorded
// boot's event log extended into it, the AK and runtime key in it, and the
// simulated AMD secure processor.
var (
	signer *sim.Signer
	device *vtpm.Device
)

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	g, err := vclienttest.StartGuest("confidant-tokens-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer g.Close()
	signer = g.Signer
	if device, err = vtpm.New(g.TPM); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer device.Close()
	return m.Run()
}

// newTestIssuer returns an Issuer with the simulated guest attesting to a
// TLS test verifier.
func newTestIssuer(t *testing.T) (*Issuer, *vclienttest.Verifier) {
	t.Helper()
	v, err := vclienttest.NewVerifier(signer.RootCert(), []byte("never released here"))
	if err != nil {
		t.Fatal(err)
	}
	srv := v.ServeTLS(t)
	u, _ := url.Parse(srv.URL)
	c, err := vclient.New(vclient.Config{URL: u, RootCAs: srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs})
	if err != nil {
		t.Fatal(err)
	}
	return NewIssuer(Deps{
		Client: c, Quoter: vclienttest.SimQuoter(t, signer), TPM: device.AK, RuntimeKey: device.RuntimeKey,
		EventLog: func() ([]byte, error) { return vclienttest.EventLog(), nil },
	}), v
}

func TestIssuerToken(t *testing.T) {
	iss, v := newTestIssuer(t)
	tests := map[string]struct {
		req          Request
		wantWorkload string
		wantErr      error
	}{
		"audience":           {req: Request{Audience: "rp-1"}},
		"audience and nonce": {req: Request{Audience: "rp-2", Nonce: "fresh-0042"}, wantWorkload: `{"nonce":"fresh-0042"}`},
		"no audience":        {req: Request{Nonce: "x"}, wantErr: ErrRequest},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			before := v.Count("attest")
			tok, err := iss.Token(context.Background(), tt.req)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Token = %v, want %v", err, tt.wantErr)
			}
			if tt.wantErr != nil {
				if v.Count("attest") != before {
					t.Error("a bad request reached the verifier")
				}
				return
			}
			c, err := v.ParseToken(tok)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(v.Audience(), []string{tt.req.Audience}) {
				t.Errorf("audience %v, want %s", v.Audience(), tt.req.Audience)
			}
			if string(c.Runtime.Data) != tt.wantWorkload {
				t.Errorf("runtime.data %s, want %s", c.Runtime.Data, tt.wantWorkload)
			}
			if v.Count("release") != 0 {
				t.Error("a key release was asked for")
			}
		})
	}
}

func TestIssuerDenied(t *testing.T) {
	iss, v := newTestIssuer(t)
	v.Deny = []string{"policy says no"}
	_, err := iss.Token(context.Background(), Request{Audience: "rp"})
	if !errors.Is(err, vclient.ErrAttestDenied) {
		t.Fatalf("Token = %v, want ErrAttestDenied", err)
	}
}

// TestIssuerConcurrent: requests share the TPM and the TEE interface one at
// a time, and each gets its own fresh evidence.
func TestIssuerConcurrent(t *testing.T) {
	iss, v := newTestIssuer(t)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for i := range 4 {
		wg.Go(func() {
			_, err := iss.Token(context.Background(), Request{Audience: fmt.Sprintf("rp-%d", i)})
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if n := v.Count("challenge"); n != 4 {
		t.Errorf("%d challenges, want one per token", n)
	}
}

// TestServeIssuer runs the socket API in front of the real Issuer.
func TestServeIssuer(t *testing.T) {
	iss, v := newTestIssuer(t)
	c, _ := serve(t, &Server{Source: iss})
	status, _, body := get(t, c, http.MethodGet, "audience=rp-socket&nonce=abc")
	if status != http.StatusOK {
		t.Fatalf("status %d %v", status, body)
	}
	tok, _ := body["token"].(string)
	cl, err := v.ParseToken(tok)
	if err != nil {
		t.Fatal(err)
	}
	if string(cl.Runtime.Data) != `{"nonce":"abc"}` || !slices.Equal(v.Audience(), []string{"rp-socket"}) {
		t.Errorf("runtime.data %s, audience %v", cl.Runtime.Data, v.Audience())
	}
}

func TestOpen(t *testing.T) {
	const cfg = "verifier:\n  url: %s\nkey_name: os-disk\nos_disk:\n  luks_uuid: 3f1c2b6a-1111-4222-8333-444455556666\ntee: sim\ndevice_timeout: 100ms\n"
	srv := httptest.NewTLSServer(http.NotFoundHandler())
	defer srv.Close()
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	cmdline := filepath.Join(t.TempDir(), "cmdline")
	write(t, cmdline, "console=ttyS0 confidant.debug_shell=1\n")

	tests := map[string]struct {
		files   map[string]string
		ca      string
		wantErr error
		wantIn  string
	}{
		// Everything read; no TEE interface on this machine.
		"CA beside the configuration": {
			files:   map[string]string{"agent.yaml": fmt.Sprintf(cfg, srv.URL), "verifier-ca.pem": string(caPEM)},
			wantErr: quote.ErrNoTEE,
		},
		"CA given": {
			files:   map[string]string{"agent.yaml": fmt.Sprintf(cfg, srv.URL), "elsewhere.pem": string(caPEM)},
			ca:      "elsewhere.pem",
			wantErr: quote.ErrNoTEE,
		},
		"no CA": {
			files:  map[string]string{"agent.yaml": fmt.Sprintf(cfg, srv.URL)},
			wantIn: "reading verifier CA",
		},
		"no configuration": {
			wantErr: os.ErrNotExist, wantIn: "reading agent configuration",
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			for f, content := range tt.files {
				write(t, filepath.Join(dir, f), content)
			}
			opts := Options{ConfigPath: filepath.Join(dir, "agent.yaml"), CmdlinePath: cmdline, TPMPath: filepath.Join(dir, "tpmrm0")}
			if tt.ca != "" {
				opts.CAFile = filepath.Join(dir, tt.ca)
			}
			iss, err := Open(context.Background(), opts)
			if err == nil {
				iss.Close()
				t.Fatal("Open succeeded without a TEE interface")
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("Open = %v, want %v", err, tt.wantErr)
			}
			if tt.wantIn != "" && !strings.Contains(err.Error(), tt.wantIn) {
				t.Errorf("Open = %v, want it to say %q", err, tt.wantIn)
			}
		})
	}
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}
