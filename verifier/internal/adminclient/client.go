package adminclient

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	adminapi "github.com/confidant-cvm/confidant/shared/api/admin"
)

// DefaultTimeout bounds one admin request.
const DefaultTimeout = 60 * time.Second

// maxResponse bounds an answer (the audit export streams instead).
const maxResponse = 64 << 20

// Error is an error answer of the admin API (shared/api/admin).
type Error = adminapi.Error

// ClientConfig says how to reach the admin API: a unix socket, or an
// https URL with a client certificate. Exactly one of Socket and URL.
type ClientConfig struct {
	// Socket is the path of the admin unix socket.
	Socket string
	// URL is https://HOST:PORT of a TCP admin listener.
	URL string
	// TLS is the client's TLS configuration for URL (client certificate and
	// the CA of the server).
	TLS *tls.Config
	// HTTPClient replaces the transport entirely (tests); Socket, URL's
	// scheme and TLS are then ignored, URL is the base.
	HTTPClient *http.Client
	// Timeout bounds each request; zero means DefaultTimeout.
	Timeout time.Duration
}

// Client calls the admin API.
type Client struct {
	base    string
	http    *http.Client
	timeout time.Duration
}

// NewClient returns a Client.
func NewClient(cfg ClientConfig) (*Client, error) {
	c := &Client{timeout: cfg.Timeout}
	if c.timeout <= 0 {
		c.timeout = DefaultTimeout
	}
	switch {
	case cfg.HTTPClient != nil:
		if cfg.URL == "" {
			return nil, errors.New("admin client: a custom HTTP client needs a URL")
		}
		c.base, c.http = strings.TrimSuffix(cfg.URL, "/"), cfg.HTTPClient
	case cfg.Socket != "" && cfg.URL != "":
		return nil, errors.New("admin client: give a socket or a URL, not both")
	case cfg.Socket != "":
		path := cfg.Socket
		c.base = "http://admin"
		c.http = &http.Client{Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", path)
			},
		}}
	case cfg.URL != "":
		u, err := url.Parse(cfg.URL)
		if err != nil || u.Scheme != "https" || u.Host == "" {
			return nil, fmt.Errorf("admin client: URL %q: want https://HOST:PORT", cfg.URL)
		}
		if cfg.TLS == nil || len(cfg.TLS.Certificates) == 0 {
			return nil, errors.New("admin client: the TCP admin API needs a client certificate")
		}
		c.base = strings.TrimSuffix(cfg.URL, "/")
		c.http = &http.Client{Transport: &http.Transport{TLSClientConfig: cfg.TLS}}
	default:
		return nil, errors.New("admin client: no socket or URL")
	}
	return c, nil
}

// do sends a request and decodes a 2xx JSON answer into out (unless nil).
func (c *Client) do(ctx context.Context, method, path string, body io.Reader, ctype string, out any) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	resp, err := c.send(ctx, method, path, body, ctype)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		return fmt.Errorf("%s %s: reading the answer: %w", method, path, err)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("%s %s: decoding the answer: %w", method, path, err)
	}
	return nil
}

// send makes the request and turns an error answer into an *Error.
func (c *Client) send(ctx context.Context, method, path string, body io.Reader, ctype string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	if resp.StatusCode >= 200 && resp.StatusCode <= 299 {
		return resp, nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return nil, fmt.Errorf("%s %s: %w", method, path, adminapi.DecodeError(resp.StatusCode, b))
}

func (c *Client) doJSON(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	ctype := ""
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("%s %s: %w", method, path, err)
		}
		body, ctype = bytes.NewReader(b), "application/json"
	}
	return c.do(ctx, method, path, body, ctype, out)
}

func keyPath(name string, suffix string) string {
	return PathKeys + "/" + url.PathEscape(name) + suffix
}

// CreateKey creates a platform-managed key (req.KeyMaterial empty) or
// imports a customer-managed one.
func (c *Client) CreateKey(ctx context.Context, req CreateKeyRequest) (*KeyResponse, error) {
	var out KeyResponse
	if err := c.doJSON(ctx, http.MethodPost, PathKeys, req, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ImportKey imports a customer-managed key.
func (c *Client) ImportKey(ctx context.Context, name string, material []byte, releasePolicy string) (*KeyResponse, error) {
	return c.CreateKey(ctx, CreateKeyRequest{Name: name, KeyMaterial: adminapi.EncodeKey(material), ReleasePolicy: releasePolicy})
}

// RotateKey adds a version to a key.
func (c *Client) RotateKey(ctx context.Context, name string, req RotateKeyRequest) (*KeyResponse, error) {
	var out KeyResponse
	if err := c.doJSON(ctx, http.MethodPost, keyPath(name, "/rotate"), req, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// DeleteKey deletes one version, or the whole key when version is 0.
func (c *Client) DeleteKey(ctx context.Context, name string, version int) (*DeleteResponse, error) {
	p := keyPath(name, "")
	if version != 0 {
		p += "?version=" + strconv.Itoa(version)
	}
	var out DeleteResponse
	if err := c.doJSON(ctx, http.MethodDelete, p, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ListKeys lists every key's metadata.
func (c *Client) ListKeys(ctx context.Context) (*KeyList, error) {
	var out KeyList
	if err := c.doJSON(ctx, http.MethodGet, PathKeys, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// GetKey returns one key's metadata and release policy.
func (c *Client) GetKey(ctx context.Context, name string) (*Key, error) {
	var out Key
	if err := c.doJSON(ctx, http.MethodGet, keyPath(name, ""), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// SetReleasePolicy replaces a key's release policy (empty: the default).
func (c *Client) SetReleasePolicy(ctx context.Context, name, policy string) (*KeyResponse, error) {
	var out KeyResponse
	if err := c.doJSON(ctx, http.MethodPut, keyPath(name, "/release-policy"), SetPolicyRequest{ReleasePolicy: policy}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// LoadPolicy makes src the appraisal policy of a TEE kind, on every
// replica sharing the store.
func (c *Client) LoadPolicy(ctx context.Context, kind string, src []byte) (*PolicyResponse, error) {
	var out PolicyResponse
	if err := c.do(ctx, http.MethodPut, PathPolicies+"/"+url.PathEscape(kind), bytes.NewReader(src), "text/plain", &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// LoadReferenceValues makes content the reference values.
func (c *Client) LoadReferenceValues(ctx context.Context, content []byte) (*ReferenceResponse, error) {
	var out ReferenceResponse
	if err := c.do(ctx, http.MethodPut, PathReferenceValues, bytes.NewReader(content), "application/json", &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Audit lists up to limit entries after the id after (oldest first).
func (c *Client) Audit(ctx context.Context, after int64, limit int) (*AuditList, error) {
	q := url.Values{}
	q.Set("after", strconv.FormatInt(after, 10))
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	var out AuditList
	if err := c.doJSON(ctx, http.MethodGet, PathAudit+"?"+q.Encode(), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ExportAudit copies every audit entry, as JSON lines, to w, and returns
// how many. It stops at the first line that does not decode.
func (c *Client) ExportAudit(ctx context.Context, w io.Writer) (int64, error) {
	resp, err := c.send(ctx, http.MethodGet, PathAuditExport, nil, "")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	var n int64
	for sc.Scan() {
		var e AuditEntry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			return n, fmt.Errorf("exporting audit log: line %d: %w", n+1, err)
		}
		if _, err := w.Write(append(sc.Bytes(), '\n')); err != nil {
			return n, fmt.Errorf("exporting audit log: %w", err)
		}
		n++
	}
	if err := sc.Err(); err != nil {
		return n, fmt.Errorf("exporting audit log: %w", err)
	}
	return n, nil
}

// VerifyAudit checks the audit log's hash chain on the server.
func (c *Client) VerifyAudit(ctx context.Context) (*AuditReport, error) {
	var out AuditReport
	if err := c.doJSON(ctx, http.MethodGet, PathAuditVerify, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}
