//go:build cgo

package vclient

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
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

// testVerifier speaks the verifier's API (verifier/internal/api) and
// appraises evidence with the same shared verification code the verifier
// runs: evidence.Decode and ParseRuntimeData, single-use nonces,
// snp.Verify against the simulated root with REPORT_DATA = SHA-512(runtime
// data), tpm.Verify with the AK from the runtime data, extraData =
// SHA-256(runtime data) and a strict event log replay. Tokens are ES256
// JWTs whose runtime claim holds the runtime key, and key release wraps the
// secret with shared/keywrap to that key.
//
// The real verifier cannot be used here: its packages are internal to
// verifier/, and it has no key release endpoint yet. The release answer
// follows the agreed format, application/json {"jwe": "<compact JWE>"}.
type testVerifier struct {
	t       *testing.T
	root    *x509.Certificate
	signKey *ecdsa.PrivateKey
	secret  []byte

	mu     sync.Mutex
	nonces map[string]bool
	calls  map[string]int
	// inject, if set, may answer a request instead of the verifier: it
	// gets the route ("challenge", "attest", "release") and the call number
	// (from 1) and returns true when it wrote an answer.
	inject func(w http.ResponseWriter, r *http.Request, route string, n int) bool
	// deny, if not empty, makes the appraisal policy refuse with these
	// reasons.
	deny []string
	// wrap, if set, makes the released JWE instead of wrapping the secret
	// to the token's runtime key.
	wrap func(runtimeKey jwk.Key) ([]byte, error)
	// audience is the last audience asked for.
	audience []string
}

func newTestVerifier(t *testing.T, root *x509.Certificate, secret []byte) *testVerifier {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &testVerifier{t: t, root: root, signKey: k, secret: secret, nonces: map[string]bool{}, calls: map[string]int{}}
}

func (v *testVerifier) count(route string) int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.calls[route]
}

func (v *testVerifier) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/challenge", v.route("challenge", v.challenge))
	mux.HandleFunc("POST /v1/attest", v.route("attest", v.attest))
	mux.HandleFunc("POST /v1/keys/{name}/release", v.route("release", v.release))
	return mux
}

func (v *testVerifier) route(name string, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		v.mu.Lock()
		v.calls[name]++
		n := v.calls[name]
		inject := v.inject
		v.mu.Unlock()
		if inject != nil && inject(w, r, name, n) {
			return
		}
		h(w, r)
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeAPIError(w http.ResponseWriter, status int, code string, reasons ...string) {
	writeJSON(w, status, map[string]any{"error": code, "reasons": reasons})
}

func (v *testVerifier) challenge(w http.ResponseWriter, _ *http.Request) {
	n := make([]byte, 32)
	_, _ = rand.Read(n)
	v.mu.Lock()
	v.nonces[string(n)] = true
	v.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{
		"nonce":      base64.RawURLEncoding.EncodeToString(n),
		"expires_at": time.Now().Add(time.Minute).UTC(),
	})
}

func (v *testVerifier) attest(w http.ResponseWriter, r *http.Request) {
	v.mu.Lock()
	v.audience = r.URL.Query()["audience"]
	v.mu.Unlock()
	body, err := io.ReadAll(io.LimitReader(r.Body, evidence.MaxEnvelopeSize+1))
	if err != nil {
		writeAPIError(w, http.StatusBadRequest, "malformed_request", err.Error())
		return
	}
	env, err := evidence.Decode(body)
	if err != nil {
		writeAPIError(w, http.StatusBadRequest, "malformed_request", err.Error())
		return
	}
	rd, err := evidence.ParseRuntimeData(env.RuntimeData)
	if err != nil {
		writeAPIError(w, http.StatusBadRequest, "malformed_request", err.Error())
		return
	}
	v.mu.Lock()
	known := v.nonces[string(rd.Nonce)]
	delete(v.nonces, string(rd.Nonce))
	v.mu.Unlock()
	if !known {
		writeAPIError(w, http.StatusUnauthorized, "nonce_unknown", "the nonce was not issued by this verifier")
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
	reasons = append(reasons, v.deny...)
	if len(reasons) > 0 {
		writeAPIError(w, http.StatusForbidden, "evidence_denied", reasons...)
		return
	}
	rk, err := rd.RuntimeKeyJWK()
	if err != nil {
		writeAPIError(w, http.StatusForbidden, "evidence_denied", err.Error())
		return
	}
	tok, err := v.sign(rk)
	if err != nil {
		writeAPIError(w, http.StatusInternalServerError, "internal_error", err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"token": tok})
}

// tokenClaims are the claims the test tokens carry.
type tokenClaims struct {
	ID      string `json:"jti"`
	Expiry  int64  `json:"exp"`
	Runtime struct {
		Keys json.RawMessage `json:"keys"`
	} `json:"runtime"`
}

func (v *testVerifier) sign(rk jwk.Key) (string, error) {
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
	var c tokenClaims
	c.ID = base64.RawURLEncoding.EncodeToString(id)
	c.Expiry = time.Now().Add(5 * time.Minute).Unix()
	c.Runtime.Keys = keys
	payload, err := json.Marshal(c)
	if err != nil {
		return "", err
	}
	tok, err := jws.Sign(payload, jws.WithKey(jwa.ES256(), v.signKey))
	return string(tok), err
}

func (v *testVerifier) release(w http.ResponseWriter, r *http.Request) {
	auth, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		writeAPIError(w, http.StatusUnauthorized, "token_invalid", "no bearer token")
		return
	}
	payload, err := jws.Verify([]byte(auth), jws.WithKey(jwa.ES256(), &v.signKey.PublicKey))
	if err != nil {
		writeAPIError(w, http.StatusUnauthorized, "token_invalid", "token signature")
		return
	}
	var c tokenClaims
	if err := json.Unmarshal(payload, &c); err != nil || time.Now().Unix() > c.Expiry {
		writeAPIError(w, http.StatusUnauthorized, "token_invalid", "token claims")
		return
	}
	if name := r.PathValue("name"); name != "os-disk" {
		writeAPIError(w, http.StatusNotFound, "key_unknown", "no key "+name)
		return
	}
	set, err := jwk.Parse(c.Runtime.Keys)
	if err != nil || set.Len() != 1 {
		writeAPIError(w, http.StatusForbidden, "release_denied", "no runtime key")
		return
	}
	rk, _ := set.Key(0)
	var jwe []byte
	if v.wrap != nil {
		jwe, err = v.wrap(rk)
	} else {
		jwe, err = keywrap.Wrap(v.secret, rk)
	}
	if err != nil {
		writeAPIError(w, http.StatusInternalServerError, "internal_error", err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"jwe": string(jwe)})
}
