// Package vclienttest holds test helpers for the agent's side of the
// verifier API: a verifier that speaks the API and appraises evidence with
// the shared verification code, the simulated TEE behind a quote provider,
// and a recorded TCG event log to replay into a TPM simulator. Only tests
// import it.
package vclienttest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	stdlog "log"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"

	"github.com/confidant-cvm/confidant/shared/evidence"
	"github.com/confidant-cvm/confidant/shared/keywrap"
	"github.com/confidant-cvm/confidant/shared/tee/snp"
	"github.com/confidant-cvm/confidant/shared/tpm"
)

// DefaultKeyName is the one key a Verifier releases unless told otherwise.
const DefaultKeyName = "os-disk"

// InjectFunc may answer a request instead of the Verifier: it gets the route
// ("challenge", "attest", "release") and the call number of that route
// (from 1) and returns true when it wrote an answer.
type InjectFunc func(w http.ResponseWriter, r *http.Request, route string, n int) bool

// Verifier speaks the verifier's API (verifier/internal/api) and appraises
// evidence with the same shared verification code the verifier runs:
// evidence.Decode and ParseRuntimeData, single-use nonces, snp.Verify
// against the simulated root with REPORT_DATA = SHA-512(runtime data),
// tpm.Verify with the AK from the runtime data, extraData = SHA-256(runtime
// data) and a strict event log replay. Tokens are ES256 JWTs whose runtime
// claim holds the runtime key (and the workload data, as runtime.data), and
// key release wraps the secret with shared/keywrap to that key.
//
// The real verifier cannot be used from the agent's tests: its packages are
// internal to verifier/. The release answer follows the agreed format,
// application/json {"jwe": "<compact JWE>"}.
//
// Set the exported fields before the first request.
type Verifier struct {
	// Inject, if set, may answer a request instead of the verifier.
	Inject InjectFunc
	// Deny, if not empty, makes the appraisal policy refuse with these
	// reasons (403 evidence_denied).
	Deny []string
	// Wrap, if set, makes the released JWE instead of wrapping the secret
	// to the token's runtime key.
	Wrap func(runtimeKey jwk.Key) ([]byte, error)
	// KeyName is the only key released (DefaultKeyName).
	KeyName string

	root    *x509.Certificate
	signKey *ecdsa.PrivateKey
	secret  []byte

	mu        sync.Mutex
	nonces    map[string]bool
	calls     map[string]int
	audiences [][]string
	workloads []json.RawMessage
}

// NewVerifier returns a Verifier trusting the simulated SNP root and
// releasing secret under DefaultKeyName.
func NewVerifier(root *x509.Certificate, secret []byte) (*Verifier, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	return &Verifier{
		KeyName: DefaultKeyName,
		root:    root, signKey: k, secret: slices.Clone(secret),
		nonces: map[string]bool{}, calls: map[string]int{},
	}, nil
}

// ServeTLS serves v's API on a TLS test server that is closed when the test
// ends. The server's error log is discarded: some tests make TLS handshakes
// fail on purpose.
func (v *Verifier) ServeTLS(t testing.TB) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(v.Handler())
	srv.Config.ErrorLog = stdlog.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

// Count returns how many requests reached route ("challenge", "attest",
// "release"), injected answers included.
func (v *Verifier) Count(route string) int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.calls[route]
}

// Audience returns the audiences the last attest request asked for.
func (v *Verifier) Audience() []string {
	v.mu.Lock()
	defer v.mu.Unlock()
	if len(v.audiences) == 0 {
		return nil
	}
	return slices.Clone(v.audiences[len(v.audiences)-1])
}

// Workloads returns the runtime data's workload object of every accepted
// attest request, in order (nil for none).
func (v *Verifier) Workloads() []json.RawMessage {
	v.mu.Lock()
	defer v.mu.Unlock()
	return slices.Clone(v.workloads)
}

// PublicKey is the token signing key.
func (v *Verifier) PublicKey() *ecdsa.PublicKey { return &v.signKey.PublicKey }

// Handler serves the API.
func (v *Verifier) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/challenge", v.route("challenge", v.challenge))
	mux.HandleFunc("POST /v1/attest", v.route("attest", v.attest))
	mux.HandleFunc("POST /v1/keys/{name}/release", v.route("release", v.Release))
	return mux
}

func (v *Verifier) route(name string, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		v.mu.Lock()
		v.calls[name]++
		n := v.calls[name]
		inject := v.Inject
		v.mu.Unlock()
		if inject != nil && inject(w, r, name, n) {
			return
		}
		h(w, r)
	}
}

// WriteJSON writes v as a JSON answer with status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// WriteAPIError writes the API's error document.
func WriteAPIError(w http.ResponseWriter, status int, code string, reasons ...string) {
	WriteJSON(w, status, map[string]any{"error": code, "reasons": reasons})
}

func (v *Verifier) challenge(w http.ResponseWriter, _ *http.Request) {
	n := make([]byte, 32)
	_, _ = rand.Read(n)
	v.mu.Lock()
	v.nonces[string(n)] = true
	v.mu.Unlock()
	WriteJSON(w, http.StatusOK, map[string]any{
		"nonce":      base64.RawURLEncoding.EncodeToString(n),
		"expires_at": time.Now().Add(time.Minute).UTC(),
	})
}

func (v *Verifier) attest(w http.ResponseWriter, r *http.Request) {
	v.mu.Lock()
	v.audiences = append(v.audiences, r.URL.Query()["audience"])
	v.mu.Unlock()
	body, err := io.ReadAll(io.LimitReader(r.Body, evidence.MaxEnvelopeSize+1))
	if err != nil {
		WriteAPIError(w, http.StatusBadRequest, "malformed_request", err.Error())
		return
	}
	env, err := evidence.Decode(body)
	if err != nil {
		WriteAPIError(w, http.StatusBadRequest, "malformed_request", err.Error())
		return
	}
	rd, err := evidence.ParseRuntimeData(env.RuntimeData)
	if err != nil {
		WriteAPIError(w, http.StatusBadRequest, "malformed_request", err.Error())
		return
	}
	v.mu.Lock()
	known := v.nonces[string(rd.Nonce)]
	delete(v.nonces, string(rd.Nonce))
	v.mu.Unlock()
	if !known {
		WriteAPIError(w, http.StatusUnauthorized, "nonce_unknown", "the nonce was not issued by this verifier")
		return
	}
	var reasons []string
	if env.TEE != evidence.KindSimSNP {
		reasons = append(reasons, fmt.Sprintf("TEE kind %s", env.TEE))
	}
	want := evidence.ReportData(env.RuntimeData)
	if _, err := snp.Verify(env.Report, env.CertTable, snp.Options{SimRoot: v.root, ReportData: want[:], AllowSMT: true}); err != nil {
		reasons = append(reasons, err.Error())
	}
	ak, err := rd.AKPublic()
	if err != nil {
		reasons = append(reasons, err.Error())
	} else {
		extra := evidence.TPMNonce(env.RuntimeData)
		if _, err := tpm.Verify(env.TPM, ak, extra[:], tpm.Options{}); err != nil {
			reasons = append(reasons, err.Error())
		}
	}
	reasons = append(reasons, v.Deny...)
	if len(reasons) > 0 {
		WriteAPIError(w, http.StatusForbidden, "evidence_denied", reasons...)
		return
	}
	rk, err := rd.RuntimeKeyJWK()
	if err != nil {
		WriteAPIError(w, http.StatusForbidden, "evidence_denied", err.Error())
		return
	}
	tok, err := v.sign(rk, rd.Workload)
	if err != nil {
		WriteAPIError(w, http.StatusInternalServerError, "internal_error", err.Error())
		return
	}
	v.mu.Lock()
	v.workloads = append(v.workloads, rd.Workload)
	v.mu.Unlock()
	WriteJSON(w, http.StatusOK, map[string]string{"token": tok})
}

// Claims are the claims of the Verifier's tokens.
type Claims struct {
	ID      string `json:"jti"`
	Expiry  int64  `json:"exp"`
	Runtime struct {
		Keys json.RawMessage `json:"keys"`
		Data json.RawMessage `json:"data,omitempty"`
	} `json:"runtime"`
}

func (v *Verifier) sign(rk jwk.Key, workload json.RawMessage) (string, error) {
	set := jwk.NewSet()
	if err := set.AddKey(rk); err != nil {
		return "", err
	}
	keys, err := json.Marshal(set)
	if err != nil {
		return "", err
	}
	id := make([]byte, 12)
	_, _ = rand.Read(id)
	var c Claims
	c.ID = base64.RawURLEncoding.EncodeToString(id)
	c.Expiry = time.Now().Add(5 * time.Minute).Unix()
	c.Runtime.Keys = keys
	c.Runtime.Data = workload
	payload, err := json.Marshal(c)
	if err != nil {
		return "", err
	}
	tok, err := jws.Sign(payload, jws.WithKey(jwa.ES256(), v.signKey))
	return string(tok), err
}

// ParseToken checks a token's signature with the Verifier's key and returns
// its claims.
func (v *Verifier) ParseToken(token string) (*Claims, error) {
	payload, err := jws.Verify([]byte(token), jws.WithKey(jwa.ES256(), &v.signKey.PublicKey))
	if err != nil {
		return nil, fmt.Errorf("verifying token: %w", err)
	}
	var c Claims
	if err := json.Unmarshal(payload, &c); err != nil {
		return nil, fmt.Errorf("parsing token claims: %w", err)
	}
	return &c, nil
}

// Release is the key release handler (POST /v1/keys/{name}/release).
func (v *Verifier) Release(w http.ResponseWriter, r *http.Request) {
	auth, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		WriteAPIError(w, http.StatusUnauthorized, "token_invalid", "no bearer token")
		return
	}
	c, err := v.ParseToken(auth)
	if err != nil || time.Now().Unix() > c.Expiry {
		WriteAPIError(w, http.StatusUnauthorized, "token_invalid", "token signature or claims")
		return
	}
	if name := r.PathValue("name"); name != v.KeyName {
		WriteAPIError(w, http.StatusNotFound, "key_unknown", "no key "+name)
		return
	}
	set, err := jwk.Parse(c.Runtime.Keys)
	if err != nil || set.Len() != 1 {
		WriteAPIError(w, http.StatusForbidden, "release_denied", "no runtime key")
		return
	}
	rk, _ := set.Key(0)
	var jwe []byte
	if v.Wrap != nil {
		jwe, err = v.Wrap(rk)
	} else {
		jwe, err = keywrap.Wrap(v.secret, rk)
	}
	if err != nil {
		WriteAPIError(w, http.StatusInternalServerError, "internal_error", err.Error())
		return
	}
	WriteJSON(w, http.StatusOK, map[string]string{"jwe": string(jwe)})
}
