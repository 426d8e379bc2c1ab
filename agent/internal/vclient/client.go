// Package vclient is the agent's side of the verifier's HTTP API: a
// challenge, the evidence, a token, the key release, and the unwrapping of
// the released key inside the vTPM.
//
// The Client makes single requests over HTTPS to a verifier whose
// certificate chains to the CA baked into the initramfs (no system roots,
// TLS 1.2 or later, no proxies, no redirects); plain HTTP only when the
// configuration explicitly allows it. Attest ties the steps together with
// retries: exponential backoff with full jitter, bounded by a total time
// budget and an attempt count, with a progress callback per attempt. A
// Session (Begin) runs the same steps in two halves under one budget, so the
// boot flow can report "attest" and "release" apart; Token runs the first
// half alone, for workloads' tokens after boot.
//
// Nothing here logs a token in full (only its jti and exp), a JWE or a key.
package vclient

import (
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
	"unicode"

	"github.com/confidant-cvm/confidant/shared/api"
	"github.com/confidant-cvm/confidant/shared/evidence"
)

// Sentinel errors, one per stage, that the error of Attest matches (with
// errors.Is) so the caller can say what failed.
var (
	// ErrChallenge: no challenge could be had from the verifier.
	ErrChallenge = errors.New("getting a challenge")
	// ErrEvidence: the guest could not produce its evidence (hardware
	// report, vTPM quote, event log, runtime data). Not retried.
	ErrEvidence = errors.New("collecting evidence")
	// ErrAttest: the evidence could not be exchanged for a token.
	ErrAttest = errors.New("attesting")
	// ErrAttestDenied: the verifier appraised the evidence and refused it
	// (HTTP 403). Matched together with ErrAttest. Never retried.
	ErrAttestDenied = errors.New("verifier denied the evidence")
	// ErrRelease: the key was not released.
	ErrRelease = errors.New("releasing the key")
	// ErrUnwrap: the released JWE did not open with the runtime key.
	ErrUnwrap = errors.New("unwrapping the released key")
	// ErrBudgetExhausted: the retries ran out of time or attempts; matched
	// together with the sentinel of the stage that failed last.
	ErrBudgetExhausted = errors.New("retry budget exhausted")
	// ErrResponse: the verifier answered success with a body that is not
	// what the API promises (malformed, too large, wrong type).
	ErrResponse = errors.New("malformed verifier response")
	// ErrConfig: the client configuration is not usable.
	ErrConfig = errors.New("invalid verifier client configuration")
)

// Response size limits.
const (
	maxChallengeBody = 4 << 10
	maxTokenBody     = 64 << 10
	maxReleaseBody   = 32 << 10
	maxErrorBody     = 16 << 10
	// maxReasons and maxReasonLen bound what an error answer may put on the
	// console.
	maxReasons   = 8
	maxReasonLen = 300
)

// DefaultTimeout bounds one request when Config.Timeout is zero.
const DefaultTimeout = 30 * time.Second

// DefaultDialTimeout and DefaultHandshakeTimeout bound the TCP connect and
// the TLS handshake of a new connection when Config.DialTimeout and
// Config.HandshakeTimeout are zero. They are short and apart from the
// request timeout: a connection whose first bytes are lost (the verifier
// hung up, a relay failed) then costs a few seconds before the retry, not
// a whole request timeout.
const (
	DefaultDialTimeout      = 3 * time.Second
	DefaultHandshakeTimeout = 3 * time.Second
)

// Config configures a Client. Zero values are documented per field.
type Config struct {
	// URL is the verifier's base URL (https, or http with AllowPlainHTTP).
	// Required.
	URL *url.URL
	// RootCAs are the only CAs trusted for the verifier's certificate.
	// Required for https.
	RootCAs *x509.CertPool
	// AllowPlainHTTP permits an http:// URL (a warning is logged).
	AllowPlainHTTP bool
	// Audience is the token audience to ask for; "": the verifier's default.
	Audience string
	// Timeout bounds each request; 0: DefaultTimeout.
	Timeout time.Duration
	// DialTimeout bounds connecting to the verifier; 0: DefaultDialTimeout.
	DialTimeout time.Duration
	// HandshakeTimeout bounds the TLS handshake of a new connection; 0:
	// DefaultHandshakeTimeout.
	HandshakeTimeout time.Duration
	// Log receives debug lines and warnings; nil: discarded.
	Log *slog.Logger
}

// Client makes single requests to the verifier's API. It is safe for
// concurrent use.
type Client struct {
	base     *url.URL
	audience string
	timeout  time.Duration
	http     *http.Client
	log      *slog.Logger
}

// New checks cfg and returns a Client.
func New(cfg Config) (*Client, error) {
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var errs []error
	u := cfg.URL
	switch {
	case u == nil:
		errs = append(errs, errors.New("no verifier URL"))
	case u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "":
		errs = append(errs, fmt.Errorf("verifier URL %q: want scheme://host[:port][/path]", u.Redacted()))
	case u.Scheme == "https":
		if cfg.RootCAs == nil {
			errs = append(errs, errors.New("https needs the verifier's CA certificates"))
		}
	case u.Scheme == "http":
		if !cfg.AllowPlainHTTP {
			errs = append(errs, fmt.Errorf("verifier URL %s is plain http and plain http is not allowed", u.Redacted()))
		}
	default:
		errs = append(errs, fmt.Errorf("verifier URL scheme %q: want https", u.Scheme))
	}
	if cfg.Timeout < 0 || cfg.DialTimeout < 0 || cfg.HandshakeTimeout < 0 {
		errs = append(errs, fmt.Errorf("negative timeout (request %v, dial %v, handshake %v)", cfg.Timeout, cfg.DialTimeout, cfg.HandshakeTimeout))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	if u.Scheme == "http" {
		log.Warn("talking to the verifier over plain HTTP: evidence, token and wrapped key travel unprotected (allow_plain_http is set)",
			"url", u.Redacted())
	}
	timeout := cmp.Or(cfg.Timeout, DefaultTimeout)
	transport := &http.Transport{
		Proxy:                 nil, // never a proxy from the environment
		DialContext:           (&net.Dialer{Timeout: cmp.Or(cfg.DialTimeout, DefaultDialTimeout), KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:       &tls.Config{RootCAs: cfg.RootCAs, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:   cmp.Or(cfg.HandshakeTimeout, DefaultHandshakeTimeout),
		ResponseHeaderTimeout: timeout,
		MaxIdleConns:          2,
		IdleConnTimeout:       30 * time.Second,
		DisableCompression:    true,
	}
	base := *u
	base.Path = strings.TrimSuffix(base.Path, "/")
	return &Client{
		base:     &base,
		audience: cfg.Audience,
		timeout:  timeout,
		log:      log,
		http: &http.Client{
			Transport: transport,
			// A redirect could lead anywhere, even to plain http: never
			// follow one; the 3xx is an error.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}, nil
}

// LoadCAFile reads PEM CA certificates (the baked verifier CA) into a pool
// that holds only them.
func LoadCAFile(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading verifier CA: %w", err)
	}
	pool := x509.NewCertPool()
	n := 0
	for rest := b; ; {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parsing verifier CA %s: %w", path, err)
		}
		pool.AddCert(c)
		n++
	}
	if n == 0 {
		return nil, fmt.Errorf("verifier CA %s: no PEM certificate", path)
	}
	return pool, nil
}

// Timeout is the bound of one request.
func (c *Client) Timeout() time.Duration { return c.timeout }

// WithAudience returns a Client that asks for tokens for audience ("": the
// verifier's default) and shares c's connections.
func (c *Client) WithAudience(audience string) *Client {
	cc := *c
	cc.audience = audience
	return &cc
}

// APIError is a non-success answer of the verifier: its status and, when
// the body is the API's error document, its code and reasons.
type APIError struct {
	// Status is the HTTP status code.
	Status int
	// Code is the error code of the body ("evidence_denied"); "" when the
	// body is not the API's error document.
	Code string
	// Reasons are the reasons of the body, sanitised for the console.
	Reasons []string
	// RetryAfter is the Retry-After header in seconds, 0 if absent.
	RetryAfter time.Duration
}

// Error says "verifier answered STATUS CODE: REASON; REASON".
func (e *APIError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "verifier answered %d", e.Status)
	if e.Code != "" {
		b.WriteString(" " + e.Code)
	} else if t := http.StatusText(e.Status); t != "" {
		b.WriteString(" (" + t + ")")
	}
	if len(e.Reasons) > 0 {
		b.WriteString(": " + strings.Join(e.Reasons, "; "))
	}
	return b.String()
}

// Retryable reports whether asking again may succeed: 5xx, 408 and 429.
// Every other status (403 and the other 4xx in particular) is final.
func (e *APIError) Retryable() bool {
	return e.Status >= 500 || e.Status == http.StatusRequestTimeout || e.Status == http.StatusTooManyRequests
}

// Challenge is the verifier's challenge.
type Challenge struct {
	// Nonce goes into the runtime data.
	Nonce []byte
	// ExpiresAt is when the verifier stops accepting it.
	ExpiresAt time.Time
}

// Challenge asks for a fresh nonce (POST /v1/challenge).
func (c *Client) Challenge(ctx context.Context) (*Challenge, error) {
	body, err := c.do(ctx, http.MethodPost, api.PathChallenge, nil, "", nil, maxChallengeBody)
	if err != nil {
		return nil, err
	}
	return parseChallenge(body)
}

func parseChallenge(body []byte) (*Challenge, error) {
	var resp api.ChallengeResponse
	if err := json.Unmarshal(body, &resp); err != nil {
		return nil, fmt.Errorf("%w: challenge: %v", ErrResponse, err)
	}
	nonce, err := base64.RawURLEncoding.Strict().DecodeString(resp.Nonce)
	if err != nil {
		return nil, fmt.Errorf("%w: challenge nonce: %v", ErrResponse, err)
	}
	if n := len(nonce); n < evidence.MinNonceSize || n > evidence.MaxNonceSize {
		return nil, fmt.Errorf("%w: challenge nonce is %d bytes, want %d to %d", ErrResponse, n, evidence.MinNonceSize, evidence.MaxNonceSize)
	}
	return &Challenge{Nonce: nonce, ExpiresAt: resp.ExpiresAt}, nil
}

// SubmitEvidence posts an encoded evidence envelope (POST /v1/attest) and
// returns the token.
func (c *Client) SubmitEvidence(ctx context.Context, envelope []byte) (string, error) {
	q := url.Values{}
	if c.audience != "" {
		q.Set(api.QueryAudience, c.audience)
	}
	body, err := c.do(ctx, http.MethodPost, api.PathAttest, q, "application/json", envelope, maxTokenBody)
	if err != nil {
		return "", err
	}
	return parseToken(body)
}

func parseToken(body []byte) (string, error) {
	var resp api.AttestResponse
	if err := json.Unmarshal(body, &resp); err != nil {
		return "", fmt.Errorf("%w: token: %v", ErrResponse, err)
	}
	if _, err := parseTokenInfo(resp.Token); err != nil {
		return "", err
	}
	return resp.Token, nil
}

// ReleaseKey asks for the named key with the token as bearer (POST
// /v1/keys/{name}/release) and returns the compact JWE. The verifier may
// answer application/json {"jwe": "<compact JWE>"} or the compact JWE
// itself as application/jose.
func (c *Client) ReleaseKey(ctx context.Context, name, token string) ([]byte, error) {
	if !api.ValidKeyName(name) {
		return nil, fmt.Errorf("%w: key name %q", ErrConfig, name)
	}
	hdr := http.Header{"Authorization": {"Bearer " + token}}
	body, ctype, err := c.doRaw(ctx, http.MethodPost, api.ReleasePath(name), nil, "", nil, hdr, maxReleaseBody)
	if err != nil {
		return nil, err
	}
	return parseRelease(body, ctype)
}

func parseRelease(body []byte, ctype string) ([]byte, error) {
	mt, _, _ := strings.Cut(ctype, ";")
	switch strings.TrimSpace(strings.ToLower(mt)) {
	case "application/json":
		var resp api.ReleaseResponse
		if err := json.Unmarshal(body, &resp); err != nil {
			return nil, fmt.Errorf("%w: release: %v", ErrResponse, err)
		}
		if resp.JWE == "" {
			return nil, fmt.Errorf("%w: release: no jwe", ErrResponse)
		}
		return []byte(resp.JWE), nil
	case "application/jose":
		jwe := bytes.TrimSpace(body)
		if len(jwe) == 0 {
			return nil, fmt.Errorf("%w: release: empty body", ErrResponse)
		}
		return jwe, nil
	}
	return nil, fmt.Errorf("%w: release: content type %q", ErrResponse, ctype)
}

func (c *Client) do(ctx context.Context, method, path string, q url.Values, ctype string, body []byte, limit int64) ([]byte, error) {
	b, _, err := c.doRaw(ctx, method, path, q, ctype, body, nil, limit)
	return b, err
}

// doRaw makes one request and returns the body of a 2xx answer, or an
// *APIError for any other status, or the transport error.
func (c *Client) doRaw(ctx context.Context, method, path string, q url.Values, ctype string, body []byte, hdr http.Header, limit int64) ([]byte, string, error) {
	u := *c.base
	u.Path += path
	u.RawQuery = q.Encode()
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, u.String(), bytes.NewReader(body))
	if err != nil {
		return nil, "", fmt.Errorf("%s %s: %w", method, path, err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	req.Header.Set("Accept", "application/json, application/jose")
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, "", err // a *url.Error: it names the method and URL
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		return nil, "", fmt.Errorf("%s %s: %w", method, path, parseAPIError(resp.StatusCode, resp.Header, b))
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, "", fmt.Errorf("%s %s: reading response: %w", method, path, err)
	}
	if int64(len(b)) > limit {
		return nil, "", fmt.Errorf("%s %s: %w: body larger than %d bytes", method, path, ErrResponse, limit)
	}
	return b, resp.Header.Get("Content-Type"), nil
}

// parseAPIError turns an error answer into an *APIError. The body is
// untrusted: only the API's error document is read, and its strings are
// cleaned and shortened for the console.
func parseAPIError(status int, hdr http.Header, body []byte) *APIError {
	e := &APIError{Status: status}
	if s := hdr.Get("Retry-After"); s != "" {
		var secs int
		if _, err := fmt.Sscanf(s, "%d", &secs); err == nil && secs > 0 && secs < 3600 {
			e.RetryAfter = time.Duration(secs) * time.Second
		}
	}
	var doc api.ErrorBody
	if json.Unmarshal(body, &doc) != nil {
		return e
	}
	e.Code = clean(doc.Error, 64)
	for i, r := range doc.Reasons {
		if i == maxReasons {
			e.Reasons = append(e.Reasons, fmt.Sprintf("(%d more)", len(doc.Reasons)-maxReasons))
			break
		}
		if r = clean(r, maxReasonLen); r != "" {
			e.Reasons = append(e.Reasons, r)
		}
	}
	return e
}

// clean keeps printable characters of s, without line breaks, at most n
// runes.
func clean(s string, n int) string {
	var b strings.Builder
	i := 0
	for _, r := range s {
		if i == n {
			b.WriteString("...")
			break
		}
		if !unicode.IsPrint(r) {
			r = ' '
		}
		b.WriteRune(r)
		i++
	}
	return strings.TrimSpace(b.String())
}

// TokenInfo is what may be logged about a token.
type TokenInfo struct {
	// ID is the jti claim, cleaned for the console.
	ID string
	// Expiry is the exp claim.
	Expiry time.Time
}

// ParseTokenInfo reads a token's jti and exp for progress lines and logs
// (never print the token itself). It checks the token's shape, not its
// signature.
func ParseTokenInfo(token string) (TokenInfo, error) { return parseTokenInfo(token) }

// parseTokenInfo reads jti and exp from a JWT's payload, without checking
// its signature (the agent trusts the verifier it reached over TLS, and
// only logs these), and checks the token's shape.
func parseTokenInfo(token string) (TokenInfo, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" {
		return TokenInfo{}, fmt.Errorf("%w: token is not a compact JWS", ErrResponse)
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return TokenInfo{}, fmt.Errorf("%w: token payload: %v", ErrResponse, err)
	}
	var claims struct {
		ID  string  `json:"jti"`
		Exp float64 `json:"exp"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil {
		return TokenInfo{}, fmt.Errorf("%w: token claims: %v", ErrResponse, err)
	}
	return TokenInfo{ID: clean(claims.ID, 64), Expiry: time.Unix(int64(claims.Exp), 0).UTC()}, nil
}
