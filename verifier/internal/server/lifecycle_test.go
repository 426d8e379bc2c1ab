//go:build cgo

package server

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/confidant-cvm/confidant/verifier/internal/store"
	"github.com/confidant-cvm/confidant/verifier/internal/testguest"
)

// TestPolicyReloadKeepsServing reloads the policy (as SIGHUP does) while
// attestations are in flight: none fails, and tokens name the new policy
// once it is loaded.
func TestPolicyReloadKeepsServing(t *testing.T) {
	dir := t.TempDir()
	policyFile := filepath.Join(dir, "policy.rego")
	src, err := os.ReadFile(simDevPolicy(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(policyFile, src, 0o644); err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, fixtureOpts{policies: func(testing.TB, string) []string { return []string{policyFile} }})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	reload := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- f.srv.watcher.Run(ctx, reload) }()

	// Evidence is made up front: the TPM simulator is not concurrent.
	const n = 24
	bodies := make([][]byte, n)
	for i := range bodies {
		bodies[i] = evidenceFor(t, f.nonce(), testguest.Options{})
	}
	newSrc := strings.Replace(string(src), `claims["development"] := true`, `claims["development"] := "reloaded"`, 1)
	var wg sync.WaitGroup
	statuses := make(chan int, n)
	for i, body := range bodies {
		wg.Go(func() {
			r := f.attest(body, "")
			statuses <- r.status
		})
		if i == n/2 {
			if err := os.WriteFile(policyFile, []byte(newSrc), 0o644); err != nil {
				t.Fatal(err)
			}
			reload <- struct{}{}
		}
	}
	wg.Wait()
	close(statuses)
	for s := range statuses {
		if s != http.StatusOK {
			t.Errorf("request answered %d during reload", s)
		}
	}
	c := claimsOf(t, f.token(testguest.Options{}, ""))
	if c["development"] != "reloaded" || c["policy"].(map[string]any)["sha256"] != sha256hex([]byte(newSrc)) {
		t.Fatalf("token after reload: development=%v policy=%v", c["development"], c["policy"])
	}
	docs, err := f.srv.Store.Documents(context.Background(), store.DocPolicy)
	if err != nil || len(docs) != 2 {
		t.Fatalf("recorded policy versions: %d, %v", len(docs), err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestMetrics(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	f.token(testguest.Options{}, "")
	f.attest(evidenceFor(t, f.nonce(), testguest.Options{VMPL: 1}), "")
	f.attest([]byte("{"), "")
	r := f.do(http.MethodGet, "/metrics", nil)
	if r.status != http.StatusOK {
		t.Fatalf("metrics: %v", r)
	}
	for _, want := range []string{
		`confidant_verifier_appraisals_total{tee="sim-sev-snp",verdict="affirming"} 1`,
		`confidant_verifier_appraisals_total{tee="sim-sev-snp",verdict="contraindicated"} 1`,
		`confidant_verifier_appraisal_duration_seconds_count{tee="sim-sev-snp"} 2`,
		`confidant_verifier_nonces_issued_total 2`,
		`confidant_verifier_nonce_redemptions_total{result="ok"} 2`,
		`confidant_verifier_errors_total{code="evidence_denied"} 1`,
		`confidant_verifier_errors_total{code="malformed_request"} 1`,
		`confidant_verifier_tokens_issued_total{tee="sim-sev-snp"} 1`,
		`confidant_verifier_http_request_duration_seconds_count{code="200",method="POST",route="/v1/attest"} 1`,
		`go_goroutines`,
	} {
		if !strings.Contains(string(r.body), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// TestServe runs the real listener: plain HTTP on loopback and HTTPS, with
// graceful shutdown when the context ends.
func TestServe(t *testing.T) {
	for _, useTLS := range []bool{false, true} {
		name := "http"
		if useTLS {
			name = "https"
		}
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := DefaultConfig()
			cfg.StateDir = filepath.Join(dir, "state")
			cfg.Policies = []string{simDevPolicy(t)}
			cfg.ReferenceValues = filepath.Join(dir, "ref.json")
			writeJSONFile(t, cfg.ReferenceValues, reference())
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			cfg.Listen = ln.Addr().String()
			client := http.DefaultClient
			if useTLS {
				cfg.TLSCert, cfg.TLSKey, client = selfSigned(t, dir)
			}
			s, err := New(context.Background(), cfg, nil, Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- s.Serve(ctx, ln, nil) }()

			resp, err := client.Get(s.cfg.Issuer + "/.well-known/openid-configuration")
			if err != nil {
				t.Fatal(err)
			}
			var d map[string]any
			json.NewDecoder(resp.Body).Decode(&d)
			resp.Body.Close()
			if wantScheme := name + "://"; !strings.HasPrefix(d["issuer"].(string), wantScheme) {
				t.Fatalf("issuer %v, want %s...", d["issuer"], wantScheme)
			}
			resp, err = client.Get(s.cfg.Issuer + "/readyz")
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("readyz %d", resp.StatusCode)
			}
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("Serve: %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("no graceful shutdown")
			}
		})
	}
}

func selfSigned(t *testing.T, dir string) (certFile, keyFile string, client *http.Client) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600)
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
}

// BenchmarkAttest measures the whole in-process appraisal handler: decode,
// nonce redemption in SQLite, SNP verification, TPM verification, policy,
// signing and the audit write. Evidence is made outside the timer.
func BenchmarkAttest(b *testing.B) {
	f := newFixture(b, fixtureOpts{})
	h := f.srv.Handler
	for b.Loop() {
		b.StopTimer()
		body := evidenceFor(b, f.nonce(), testguest.Options{})
		req, _ := http.NewRequest(http.MethodPost, "/v1/attest", strings.NewReader(string(body)))
		rec := &recorder{header: http.Header{}}
		b.StartTimer()
		h.ServeHTTP(rec, req)
		if rec.status != http.StatusOK {
			b.Fatalf("attest: %d %s", rec.status, rec.body)
		}
	}
}

type recorder struct {
	header http.Header
	status int
	body   []byte
}

func (r *recorder) Header() http.Header { return r.header }
func (r *recorder) WriteHeader(s int)   { r.status = s }
func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	r.body = append(r.body, b...)
	return len(b), nil
}
