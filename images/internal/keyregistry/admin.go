// Package keyregistry is the image tool's client of the verifier's admin API,
// over the admin unix socket (<state-dir>/admin.sock of confidant-verifier
// serve). It covers what an image build needs: look a key up, create a
// platform-managed key and get its material once, import a
// customer-managed key, delete a key.
//
// The wire format is the contract both ends import (shared/api/admin, its
// errors shared/api's): JSON bodies, key material as base64url without
// padding, errors as {"error": CODE, "reasons": [...]}.
//
// Key material is kept out of strings: requests are assembled and answers
// decoded in byte slices that are zeroed once used. Copies the standard
// library's HTTP transport makes in its own buffers are beyond reach.
package keyregistry

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	adminapi "github.com/confidant-cvm/confidant/shared/api/admin"
)

// The API's paths and key origins (shared/api/admin).
const (
	PathKeys       = adminapi.PathKeys
	OriginPlatform = adminapi.OriginPlatform
	OriginCustomer = adminapi.OriginCustomer
)

// DefaultTimeout bounds one request.
const DefaultTimeout = 60 * time.Second

// maxAnswer bounds an answer: a key with its release policy (at most 256
// KiB of Rego, which JSON escaping can make up to six times longer).
const maxAnswer = 2 << 20

// Error codes of the answers callers branch on, as sentinels: an *Error
// with that code matches them under errors.Is (shared/api/admin).
var (
	// ErrKeyExists: a key of that name exists (409 key_exists).
	ErrKeyExists = adminapi.ErrKeyExists
	// ErrKeyUnknown: no such key (404 key_unknown).
	ErrKeyUnknown = adminapi.ErrKeyUnknown
	// ErrInvalidPolicy: the release policy does not load (400
	// invalid_policy).
	ErrInvalidPolicy = adminapi.ErrInvalidPolicy
)

// ErrBadAnswer means an answer of the verifier did not decode or was not
// what was asked for.
var ErrBadAnswer = errors.New("unexpected answer from the verifier's admin API")

// Error is an error answer of the admin API (shared/api/admin).
type Error = adminapi.Error

// KeyVersion is one version of a key (shared/api/admin).
type KeyVersion = adminapi.KeyVersion

// Key is a key's metadata, never its material (shared/api/admin).
type Key = adminapi.Key

// CreateKeyRequest creates a key: without KeyMaterial a platform-managed
// one (the verifier generates 32 random bytes), with it a customer-managed
// one (imported, 16 to 1024 bytes).
type CreateKeyRequest struct {
	Name string
	// ReleasePolicy is the Rego release policy; empty: the verifier's
	// default policy.
	ReleasePolicy string
	// ReturnKey asks for the generated key in the answer (only for
	// platform-managed keys; it is returned this once).
	ReturnKey bool
	// KeyMaterial is the key to import. The caller keeps (and zeroes) it.
	KeyMaterial []byte
}

// KeyResponse is the answer to a create request: the API's (Key and
// Version), with the key material decoded into bytes instead of a string.
type KeyResponse struct {
	adminapi.KeyResponse
	// KeyMaterial is the generated key when ReturnKey was asked; the
	// caller zeroes it once used. It shadows the API's string field, which
	// stays empty.
	KeyMaterial Secret `json:"key_material"`
}

// Secret is key material: base64url without padding in JSON, decoded
// without passing through a string.
type Secret []byte

// UnmarshalJSON decodes a base64url JSON string (or null).
func (s *Secret) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*s = nil
		return nil
	}
	if len(b) < 2 || b[0] != '"' || b[len(b)-1] != '"' {
		return errors.New("key material is not a JSON string")
	}
	b = b[1 : len(b)-1]
	out := make([]byte, base64.RawURLEncoding.DecodedLen(len(b)))
	n, err := base64.RawURLEncoding.Decode(out, b)
	if err != nil {
		clear(out)
		return errors.New("key material is not base64url")
	}
	*s = out[:n]
	return nil
}

// Client calls the admin API over its unix socket.
type Client struct {
	http    *http.Client
	timeout time.Duration
}

// NewClient returns a Client of the admin API listening on the unix socket
// at socket. timeout bounds each request; 0: DefaultTimeout.
func NewClient(socket string, timeout time.Duration) (*Client, error) {
	if socket == "" {
		return nil, errors.New("admin client: no socket")
	}
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	return &Client{timeout: timeout, http: &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
		DisableKeepAlives: true,
	}}}, nil
}

// base is the URL of every request; the host is never resolved.
const base = "http://admin"

// do sends body and returns the 2xx answer's bytes (the caller zeroes them
// when they may hold key material) or the error answer as an *Error.
func (c *Client) do(ctx context.Context, method, path string, body []byte) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, base+path, rd)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := readAll(resp.Body, maxAnswer)
	if err != nil {
		return nil, fmt.Errorf("%s %s: reading the answer: %w", method, path, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		defer clear(b)
		return nil, fmt.Errorf("%s %s: %w", method, path, adminapi.DecodeError(resp.StatusCode, b))
	}
	return b, nil
}

// readAll reads at most limit bytes of r, zeroing every buffer it outgrows
// (the answer may hold key material).
func readAll(r io.Reader, limit int) ([]byte, error) {
	b := make([]byte, 0, 16<<10)
	for {
		if len(b) == cap(b) {
			if len(b) >= limit {
				clear(b)
				return nil, fmt.Errorf("answer larger than %d bytes", limit)
			}
			nb := make([]byte, len(b), min(2*cap(b), limit+1))
			copy(nb, b)
			clear(b)
			b = nb
		}
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if errors.Is(err, io.EOF) {
			if len(b) > limit {
				clear(b)
				return nil, fmt.Errorf("answer larger than %d bytes", limit)
			}
			return b, nil
		}
		if err != nil {
			clear(b)
			return nil, err
		}
	}
}

// createBody is the JSON of req, with the key material encoded in place.
func createBody(req CreateKeyRequest) ([]byte, error) {
	// The API's body without key_material (omitted when empty), which is
	// appended below without passing through a string.
	head := adminapi.CreateKeyRequest{Name: req.Name, ReleasePolicy: req.ReleasePolicy, ReturnKey: req.ReturnKey}
	b, err := json.Marshal(head)
	if err != nil {
		return nil, err
	}
	if req.KeyMaterial == nil {
		return b, nil
	}
	const field = `,"key_material":"`
	n := base64.RawURLEncoding.EncodedLen(len(req.KeyMaterial))
	out := make([]byte, 0, len(b)+len(field)+n+2)
	out = append(out, b[:len(b)-1]...) // without the closing brace
	out = append(out, field...)
	out = out[:len(out)+n]
	base64.RawURLEncoding.Encode(out[len(out)-n:], req.KeyMaterial)
	return append(out, '"', '}'), nil
}

// CreateKey creates a platform-managed key (req.KeyMaterial nil) or
// imports a customer-managed one. The answer is checked to be about the key
// asked for, and to carry material exactly when it was asked for.
func (c *Client) CreateKey(ctx context.Context, req CreateKeyRequest) (*KeyResponse, error) {
	body, err := createBody(req)
	if err != nil {
		return nil, fmt.Errorf("creating key %s: %w", req.Name, err)
	}
	defer clear(body)
	b, err := c.do(ctx, http.MethodPost, PathKeys, body)
	if err != nil {
		return nil, fmt.Errorf("creating key %s: %w", req.Name, err)
	}
	defer clear(b)
	resp, err := decodeKeyResponse(b)
	if err != nil {
		return nil, fmt.Errorf("creating key %s: %w", req.Name, err)
	}
	var problems []string
	if resp.Key.Name != req.Name {
		problems = append(problems, fmt.Sprintf("the answer is about key %q", resp.Key.Name))
	}
	if resp.Version < 1 {
		problems = append(problems, fmt.Sprintf("version %d", resp.Version))
	}
	if want := req.ReturnKey && req.KeyMaterial == nil; want != (resp.KeyMaterial != nil) {
		problems = append(problems, fmt.Sprintf("key material returned: %v, asked for: %v", resp.KeyMaterial != nil, want))
	}
	if len(problems) > 0 {
		clear(resp.KeyMaterial)
		return nil, fmt.Errorf("creating key %s: %w: %s", req.Name, ErrBadAnswer, strings.Join(problems, "; "))
	}
	return resp, nil
}

// decodeKeyResponse decodes a create answer; b stays the caller's.
func decodeKeyResponse(b []byte) (*KeyResponse, error) {
	var resp KeyResponse
	if err := json.Unmarshal(b, &resp); err != nil {
		clear(resp.KeyMaterial)
		return nil, fmt.Errorf("%w: %v", ErrBadAnswer, err)
	}
	return &resp, nil
}

// GetKey returns a key's metadata and release policy.
func (c *Client) GetKey(ctx context.Context, name string) (*Key, error) {
	b, err := c.do(ctx, http.MethodGet, keyPath(name), nil)
	if err != nil {
		return nil, fmt.Errorf("looking up key %s: %w", name, err)
	}
	var k Key
	if err := json.Unmarshal(b, &k); err != nil {
		return nil, fmt.Errorf("looking up key %s: %w: %v", name, ErrBadAnswer, err)
	}
	if k.Name != name {
		return nil, fmt.Errorf("looking up key %s: %w: the answer is about key %q", name, ErrBadAnswer, k.Name)
	}
	return &k, nil
}

// DeleteKey deletes a key, every version of it.
func (c *Client) DeleteKey(ctx context.Context, name string) error {
	b, err := c.do(ctx, http.MethodDelete, keyPath(name), nil)
	if err != nil {
		return fmt.Errorf("deleting key %s: %w", name, err)
	}
	var out adminapi.DeleteResponse
	if err := json.Unmarshal(b, &out); err != nil || out.Name != name || out.Version != 0 {
		return fmt.Errorf("deleting key %s: %w: %q", name, ErrBadAnswer, b)
	}
	return nil
}

func keyPath(name string) string { return PathKeys + "/" + url.PathEscape(name) }
