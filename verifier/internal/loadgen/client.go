package loadgen

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/confidant-cvm/confidant/shared/api"
)

// Outcomes of a flow that are not the verifier's answer.
var (
	// ErrUnwrap: the released JWE did not open with the runtime key.
	ErrUnwrap = errors.New("unwrapping the released key")
	// ErrResponse: a 2xx answer the generator cannot use.
	ErrResponse = errors.New("unusable verifier response")
	// ErrMismatch: a released key differs from the one released earlier.
	ErrMismatch = errors.New("released key differs between agents")
)

// Codes for failures that carry no verifier error code.
const (
	CodeTransportRefused  = "transport_connection_refused"
	CodeTransportReset    = "transport_connection_reset"
	CodeTransportTimeout  = "transport_timeout"
	CodeTransportEOF      = "transport_eof"
	CodeTransportNoAddr   = "transport_address_not_available"
	CodeTransportOther    = "transport_error"
	CodeBadResponse       = "bad_response"
	CodeUnwrapFailed      = "unwrap_failed"
	CodeReleaseMismatch   = "release_mismatch"
	CodeEvidenceGenFailed = "evidence_generation_failed"
)

// APIError is a non-2xx answer of the verifier.
type APIError struct {
	// Status is the HTTP status.
	Status int
	// Code is the body's "error" field, or "http_<status>" when the body
	// is not the verifier's error JSON.
	Code string
	// Reasons is the body's "reasons" field.
	Reasons []string
}

func (e *APIError) Error() string {
	if len(e.Reasons) == 0 {
		return fmt.Sprintf("verifier answered %d %s", e.Status, e.Code)
	}
	return fmt.Sprintf("verifier answered %d %s: %s", e.Status, e.Code, strings.Join(e.Reasons, "; "))
}

// Code classifies a flow failure: the verifier's error code, a transport
// failure class, or one of the generator's own codes.
func Code(err error) string {
	var (
		api *APIError
		gen *genError
		ne  net.Error
	)
	switch {
	case err == nil:
		return ""
	case errors.As(err, &gen):
		return CodeEvidenceGenFailed
	case errors.As(err, &api):
		return api.Code
	case errors.Is(err, ErrUnwrap):
		return CodeUnwrapFailed
	case errors.Is(err, ErrMismatch):
		return CodeReleaseMismatch
	case errors.Is(err, ErrResponse):
		return CodeBadResponse
	case errors.Is(err, syscall.ECONNREFUSED):
		return CodeTransportRefused
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return CodeTransportReset
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return CodeTransportNoAddr
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded),
		errors.As(err, &ne) && ne.Timeout():
		return CodeTransportTimeout
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return CodeTransportEOF
	}
	return CodeTransportOther
}

// Response size limits.
const (
	maxSmallBody   = 64 << 10
	maxReleaseBody = 64 << 10
)

// ClientConfig configures a Client.
type ClientConfig struct {
	// BaseURL is the verifier, e.g. http://127.0.0.1:8443.
	BaseURL string
	// Connections is the number of concurrent agents: the transport keeps
	// that many idle connections to the verifier.
	Connections int
	// Timeout bounds one request; zero: 30 s.
	Timeout time.Duration
	// TLS configures HTTPS (RootCAs for a private verifier certificate);
	// nil: system roots.
	TLS *tls.Config
	// Audience is the aud asked for in each token; empty: the verifier's
	// default.
	Audience string
}

// Client talks to the verifier's API. It is safe for concurrent use.
type Client struct {
	base       *url.URL
	http       *http.Client
	attestPath string
}

// NewClient returns a Client whose transport keeps one connection per
// agent alive.
func NewClient(cfg ClientConfig) (*Client, error) {
	u, err := url.Parse(cfg.BaseURL)
	if err != nil {
		return nil, fmt.Errorf("parsing verifier URL: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("parsing verifier URL %q: want http(s)://host[:port]", cfg.BaseURL)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	conns := max(cfg.Connections, 1)
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	tr := &http.Transport{
		Proxy:                 nil,
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:       cfg.TLS,
		TLSHandshakeTimeout:   10 * time.Second,
		MaxIdleConns:          conns,
		MaxIdleConnsPerHost:   conns,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: timeout,
		DisableCompression:    true,
		ForceAttemptHTTP2:     false,
	}
	c := &Client{base: u, http: &http.Client{Transport: tr, Timeout: timeout}, attestPath: api.PathAttest}
	if cfg.Audience != "" {
		c.attestPath += "?" + url.Values{api.QueryAudience: {cfg.Audience}}.Encode()
	}
	return c, nil
}

// Close drops idle connections.
func (c *Client) Close() { c.http.CloseIdleConnections() }

// Challenge asks for a nonce (POST /v1/challenge).
func (c *Client) Challenge(ctx context.Context) ([]byte, error) {
	var resp api.ChallengeResponse
	if err := c.postJSON(ctx, api.PathChallenge, nil, "", &resp); err != nil {
		return nil, fmt.Errorf("getting challenge: %w", err)
	}
	nonce, err := base64.RawURLEncoding.DecodeString(resp.Nonce)
	if err != nil || len(nonce) == 0 {
		return nil, fmt.Errorf("getting challenge: %w: nonce %q", ErrResponse, resp.Nonce)
	}
	return nonce, nil
}

// Attest sends an evidence envelope (POST /v1/attest) and returns the token.
func (c *Client) Attest(ctx context.Context, body []byte) (string, error) {
	var resp api.AttestResponse
	if err := c.postJSON(ctx, c.attestPath, body, "", &resp); err != nil {
		return "", fmt.Errorf("attesting: %w", err)
	}
	if strings.Count(resp.Token, ".") != 2 {
		return "", fmt.Errorf("attesting: %w: no JWT in the answer", ErrResponse)
	}
	return resp.Token, nil
}

// Release asks for key name with the token as bearer (POST
// /v1/keys/{name}/release) and returns the compact JWE. The verifier may
// answer application/json {"jwe": "..."} or application/jose.
func (c *Client) Release(ctx context.Context, name, token string) ([]byte, error) {
	resp, err := c.do(ctx, api.ReleasePath(name), nil, token)
	if err != nil {
		return nil, fmt.Errorf("releasing key %q: %w", name, err)
	}
	defer resp.Body.Close()
	body, err := readBody(resp, maxReleaseBody)
	if err != nil {
		return nil, fmt.Errorf("releasing key %q: %w", name, err)
	}
	jwe, err := parseRelease(body, resp.Header.Get("Content-Type"))
	if err != nil {
		return nil, fmt.Errorf("releasing key %q: %w", name, err)
	}
	return jwe, nil
}

func parseRelease(body []byte, ctype string) ([]byte, error) {
	mt, _, _ := mime.ParseMediaType(ctype)
	switch mt {
	case "application/json":
		var resp api.ReleaseResponse
		if err := json.Unmarshal(body, &resp); err != nil || resp.JWE == "" {
			return nil, fmt.Errorf("%w: no jwe in the answer", ErrResponse)
		}
		return []byte(resp.JWE), nil
	case "application/jose", "text/plain":
		if jwe := bytes.TrimSpace(body); len(jwe) > 0 {
			return jwe, nil
		}
		return nil, fmt.Errorf("%w: empty answer", ErrResponse)
	}
	return nil, fmt.Errorf("%w: content type %q", ErrResponse, ctype)
}

func (c *Client) postJSON(ctx context.Context, path string, body []byte, bearer string, out any) error {
	resp, err := c.do(ctx, path, body, bearer)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := readBody(resp, maxSmallBody)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("%w: %w", ErrResponse, err)
	}
	return nil
}

// do POSTs body to path. A non-2xx answer is an *APIError (the body read
// and closed); otherwise the caller closes the body.
func (c *Client) do(ctx context.Context, path string, body []byte, bearer string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base.String()+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 == 2 {
		return resp, nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxSmallBody))
	apiErr := &APIError{Status: resp.StatusCode}
	var eb api.ErrorBody
	if json.Unmarshal(b, &eb) == nil && eb.Error != "" {
		apiErr.Code, apiErr.Reasons = eb.Error, eb.Reasons
	} else {
		apiErr.Code = "http_" + strconv.Itoa(resp.StatusCode)
	}
	return nil, apiErr
}

// readBody reads at most limit bytes of a 2xx body, draining it so the
// connection is reused.
func readBody(resp *http.Response, limit int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%w: answer over %d bytes", ErrResponse, limit)
	}
	return b, nil
}
