package vclient

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestNewConfig(t *testing.T) {
	pool := x509.NewCertPool()
	mustURL := func(s string) *url.URL {
		u, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		return u
	}
	tests := map[string]struct {
		cfg     Config
		wantErr bool
	}{
		"https":               {cfg: Config{URL: mustURL("https://10.0.2.2:8443"), RootCAs: pool}},
		"https with path":     {cfg: Config{URL: mustURL("https://verifier.example/confidant/"), RootCAs: pool}},
		"no URL":              {cfg: Config{RootCAs: pool}, wantErr: true},
		"https without CA":    {cfg: Config{URL: mustURL("https://10.0.2.2:8443")}, wantErr: true},
		"http not allowed":    {cfg: Config{URL: mustURL("http://10.0.2.2:8080"), RootCAs: pool}, wantErr: true},
		"http allowed":        {cfg: Config{URL: mustURL("http://10.0.2.2:8080"), AllowPlainHTTP: true}},
		"other scheme":        {cfg: Config{URL: mustURL("ftp://10.0.2.2"), RootCAs: pool}, wantErr: true},
		"query":               {cfg: Config{URL: mustURL("https://10.0.2.2/?x=1"), RootCAs: pool}, wantErr: true},
		"user info":           {cfg: Config{URL: mustURL("https://u:p@10.0.2.2/"), RootCAs: pool}, wantErr: true},
		"negative timeout":    {cfg: Config{URL: mustURL("https://10.0.2.2"), RootCAs: pool, Timeout: -1}, wantErr: true},
		"negative dial":       {cfg: Config{URL: mustURL("https://10.0.2.2"), RootCAs: pool, DialTimeout: -1}, wantErr: true},
		"negative handshake":  {cfg: Config{URL: mustURL("https://10.0.2.2"), RootCAs: pool, HandshakeTimeout: -1}, wantErr: true},
		"no host":             {cfg: Config{URL: mustURL("https:///path"), RootCAs: pool}, wantErr: true},
		"default timeout set": {cfg: Config{URL: mustURL("https://10.0.2.2"), RootCAs: pool}},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			c, err := New(tt.cfg)
			if tt.wantErr {
				if !errors.Is(err, ErrConfig) {
					t.Fatalf("New = %v, want ErrConfig", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			if c.Timeout() != DefaultTimeout {
				t.Errorf("Timeout = %v", c.Timeout())
			}
			tr := c.http.Transport.(*http.Transport)
			if tr.Proxy != nil {
				t.Error("transport uses a proxy")
			}
			if tr.TLSClientConfig.MinVersion != tls.VersionTLS12 || tr.TLSClientConfig.RootCAs != tt.cfg.RootCAs {
				t.Error("TLS config does not pin the CA pool and TLS 1.2")
			}
			if tr.TLSHandshakeTimeout != DefaultHandshakeTimeout {
				t.Errorf("TLSHandshakeTimeout = %v, want %v", tr.TLSHandshakeTimeout, DefaultHandshakeTimeout)
			}
		})
	}
}

// TestHandshakeTimeout: a connection on which the TLS handshake never
// completes (the first bytes lost, as through a stale forwarded stream)
// fails with the handshake timeout, not the request timeout: the error is
// net/http's TLS handshake timeout, and the request's own timeout (a
// minute) never fired.
func TestHandshakeTimeout(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			// Read and drop the ClientHello, never answer.
			go func() { defer c.Close(); io.Copy(io.Discard, c) }()
		}
	}()
	u, _ := url.Parse("https://" + ln.Addr().String())
	c, err := New(Config{URL: u, RootCAs: x509.NewCertPool(), Timeout: time.Minute, HandshakeTimeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Challenge(t.Context())
	if err == nil {
		t.Fatal("Challenge() error = nil from a server that never answers")
	}
	var ne net.Error
	if !strings.Contains(err.Error(), "TLS handshake timeout") || !errors.As(err, &ne) || !ne.Timeout() ||
		errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Challenge() = %v, want the TLS handshake timeout", err)
	}
}

func writeCA(t *testing.T) string {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadCAFile(t *testing.T) {
	p := writeCA(t)
	pool, err := LoadCAFile(p)
	if err != nil || pool == nil {
		t.Fatalf("LoadCAFile = %v, %v", pool, err)
	}
	empty := filepath.Join(t.TempDir(), "empty.pem")
	os.WriteFile(empty, []byte("no certificates here\n"), 0o644)
	if _, err := LoadCAFile(empty); err == nil {
		t.Error("LoadCAFile accepted a file without certificates")
	}
	bad := filepath.Join(t.TempDir(), "bad.pem")
	os.WriteFile(bad, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("junk")}), 0o644)
	if _, err := LoadCAFile(bad); err == nil {
		t.Error("LoadCAFile accepted a malformed certificate")
	}
	if _, err := LoadCAFile(filepath.Join(t.TempDir(), "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("LoadCAFile(missing) = %v", err)
	}
}

func TestRetryable(t *testing.T) {
	tests := map[string]struct {
		err  error
		want bool
	}{
		"500":                 {err: &APIError{Status: 500}, want: true},
		"503":                 {err: fmt.Errorf("x: %w", &APIError{Status: 503}), want: true},
		"429":                 {err: &APIError{Status: 429}, want: true},
		"408":                 {err: &APIError{Status: 408}, want: true},
		"400":                 {err: &APIError{Status: 400}},
		"401":                 {err: &APIError{Status: 401}},
		"403":                 {err: &APIError{Status: 403}},
		"404":                 {err: &APIError{Status: 404}},
		"302":                 {err: &APIError{Status: 302}},
		"malformed response":  {err: fmt.Errorf("x: %w", ErrResponse)},
		"connection refused":  {err: &url.Error{Op: "Post", URL: "https://v", Err: syscall.ECONNREFUSED}, want: true},
		"timeout":             {err: &url.Error{Op: "Post", URL: "https://v", Err: context.DeadlineExceeded}, want: true},
		"reset":               {err: syscall.ECONNRESET, want: true},
		"unknown authority":   {err: &url.Error{Op: "Post", URL: "https://v", Err: &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}}},
		"wrong host":          {err: &url.Error{Op: "Post", URL: "https://v", Err: x509.HostnameError{Host: "v"}}},
		"expired certificate": {err: x509.CertificateInvalidError{Reason: x509.Expired}},
		"plain server on TLS": {err: tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"}},
		"alert from server":   {err: tls.AlertError(42)},
		"configuration":       {err: ErrConfig},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			if got := retryable(tt.err); got != tt.want {
				t.Errorf("retryable(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}

func TestBackoff(t *testing.T) {
	r := &retrier{policy: Retry{BaseDelay: time.Second, MaxDelay: 10 * time.Second}.withDefaults()}
	r.jitter = func(ceil time.Duration) time.Duration { return ceil }
	want := []time.Duration{1, 2, 4, 8, 10, 10}
	for i, w := range want {
		if got := r.backoff(i+1, errors.New("x")); got != w*time.Second {
			t.Errorf("backoff(%d) = %v, want %v", i+1, got, w*time.Second)
		}
	}
	if got := r.backoff(1000, errors.New("x")); got != 10*time.Second {
		t.Errorf("backoff(1000) = %v, want the cap", got)
	}
	if got := r.backoff(1, &APIError{Status: 429, RetryAfter: 5 * time.Second}); got != 5*time.Second {
		t.Errorf("backoff with Retry-After 5s = %v", got)
	}
	if got := r.backoff(1, &APIError{Status: 429, RetryAfter: time.Hour}); got != 10*time.Second {
		t.Errorf("backoff with Retry-After 1h = %v, want the cap", got)
	}
	// A jitter out of range is clamped.
	r.jitter = func(time.Duration) time.Duration { return time.Hour }
	if got := r.backoff(1, errors.New("x")); got != time.Second {
		t.Errorf("backoff with a wild jitter = %v", got)
	}
	for range 1000 {
		if d := FullJitter(time.Second); d < 0 || d > time.Second {
			t.Fatalf("FullJitter(1s) = %v", d)
		}
	}
	if FullJitter(0) != 0 || FullJitter(-1) != 0 {
		t.Error("FullJitter of a non-positive ceiling is not 0")
	}
}

func TestParseAPIError(t *testing.T) {
	hdr := http.Header{"Retry-After": {"2"}}
	e := parseAPIError(403, hdr, []byte(`{"error":"evidence_denied","reasons":["a","b\u001b[2J\nc"]}`))
	if e.Status != 403 || e.Code != "evidence_denied" || len(e.Reasons) != 2 || e.RetryAfter != 2*time.Second {
		t.Fatalf("parseAPIError = %+v", e)
	}
	if strings.ContainsAny(e.Error(), "\x1b\n") {
		t.Errorf("Error() = %q keeps control characters", e.Error())
	}
	if got := parseAPIError(502, nil, []byte("<html>bad gateway</html>")).Error(); got != "verifier answered 502 (Bad Gateway)" {
		t.Errorf("non-JSON body: %q", got)
	}
	many := `{"error":"x","reasons":[` + strings.Repeat(`"r",`, 20) + `"r"]}`
	if e := parseAPIError(403, nil, []byte(many)); len(e.Reasons) != maxReasons+1 || !strings.Contains(e.Reasons[maxReasons], "13 more") {
		t.Errorf("reasons not bounded: %q", e.Reasons)
	}
	long := `{"error":"x","reasons":["` + strings.Repeat("y", 5000) + `"]}`
	if e := parseAPIError(403, nil, []byte(long)); len(e.Reasons[0]) > maxReasonLen+3 {
		t.Errorf("reason of %d bytes not shortened", len(e.Reasons[0]))
	}
	for _, ra := range []string{"-1", "abc", "99999", "Wed, 21 Oct 2015 07:28:00 GMT"} {
		if e := parseAPIError(429, http.Header{"Retry-After": {ra}}, nil); e.RetryAfter != 0 {
			t.Errorf("Retry-After %q gave %v", ra, e.RetryAfter)
		}
	}
}

func TestParseChallenge(t *testing.T) {
	nonce := base64.RawURLEncoding.EncodeToString(make([]byte, 32))
	tests := map[string]struct {
		body    string
		wantErr bool
	}{
		"ok":           {body: `{"nonce":"` + nonce + `","expires_at":"2025-06-01T12:00:00Z"}`},
		"short nonce":  {body: `{"nonce":"AAAA"}`, wantErr: true},
		"long nonce":   {body: `{"nonce":"` + base64.RawURLEncoding.EncodeToString(make([]byte, 65)) + `"}`, wantErr: true},
		"padded":       {body: `{"nonce":"` + base64.URLEncoding.EncodeToString(make([]byte, 32)) + `"}`, wantErr: true},
		"no nonce":     {body: `{}`, wantErr: true},
		"not JSON":     {body: `nonce`, wantErr: true},
		"bad expiry":   {body: `{"nonce":"` + nonce + `","expires_at":"soon"}`, wantErr: true},
		"std encoding": {body: `{"nonce":"` + strings.Repeat("+", 43) + `"}`, wantErr: true},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := parseChallenge([]byte(tt.body))
			if (err != nil) != tt.wantErr || (err != nil && !errors.Is(err, ErrResponse)) {
				t.Fatalf("parseChallenge = %v, want error %v (ErrResponse)", err, tt.wantErr)
			}
		})
	}
}

func TestParseRelease(t *testing.T) {
	tests := map[string]struct {
		body, ctype string
		want        string
		wantErr     bool
	}{
		"json":           {body: `{"jwe":"a.b.c.d.e"}`, ctype: "application/json", want: "a.b.c.d.e"},
		"json charset":   {body: `{"jwe":"a.b.c.d.e"}`, ctype: "application/json; charset=utf-8", want: "a.b.c.d.e"},
		"jose":           {body: "a.b.c.d.e\n", ctype: "application/jose", want: "a.b.c.d.e"},
		"json no jwe":    {body: `{"key":"x"}`, ctype: "application/json", wantErr: true},
		"json malformed": {body: `{"jwe":`, ctype: "application/json", wantErr: true},
		"jose empty":     {body: " ", ctype: "application/jose", wantErr: true},
		"other type":     {body: "a.b.c.d.e", ctype: "text/plain", wantErr: true},
		"no type":        {body: "a.b.c.d.e", ctype: "", wantErr: true},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := parseRelease([]byte(tt.body), tt.ctype)
			if tt.wantErr {
				if !errors.Is(err, ErrResponse) {
					t.Fatalf("parseRelease = %q, %v; want ErrResponse", got, err)
				}
				return
			}
			if err != nil || string(got) != tt.want {
				t.Fatalf("parseRelease = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestParseTokenInfo(t *testing.T) {
	b64 := base64.RawURLEncoding.EncodeToString
	good := b64([]byte(`{"alg":"ES256"}`)) + "." + b64([]byte(`{"jti":"abc","exp":1750000000}`)) + ".sig"
	info, err := parseTokenInfo(good)
	if err != nil || info.ID != "abc" || info.Expiry.Unix() != 1750000000 {
		t.Fatalf("parseTokenInfo = %+v, %v", info, err)
	}
	for name, tok := range map[string]string{
		"two parts":    "a.b",
		"empty sig":    good[:strings.LastIndex(good, ".")+1],
		"bad base64":   "a.!!!.c",
		"payload text": "a." + b64([]byte("hello")) + ".c",
		"empty":        "",
		"jwe":          "a.b.c.d.e",
	} {
		if _, err := parseTokenInfo(tok); !errors.Is(err, ErrResponse) {
			t.Errorf("%s: parseTokenInfo = %v, want ErrResponse", name, err)
		}
	}
}

func TestAttemptString(t *testing.T) {
	tests := map[string]struct {
		a    Attempt
		want string
	}{
		"ok":      {a: Attempt{Stage: "attest", Number: 1, Detail: "token x"}, want: "attest: attempt 1 succeeded: token x"},
		"ok bare": {a: Attempt{Stage: "release", Number: 2}, want: "release: attempt 2 succeeded"},
		"retry": {a: Attempt{Stage: "challenge", Number: 1, Err: errors.New("refused"), Retry: true, Wait: 1500 * time.Millisecond},
			want: "challenge: attempt 1 failed: refused; retrying in 1.5s"},
		"final": {a: Attempt{Stage: "attest", Number: 3, Err: errors.New("denied")}, want: "attest: attempt 3 failed: denied; giving up"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			if got := tt.a.String(); got != tt.want {
				t.Errorf("String() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestDepsCheck(t *testing.T) {
	_, _, err := Attest(context.Background(), Deps{})
	if !errors.Is(err, ErrConfig) {
		t.Fatalf("Attest with no deps = %v, want ErrConfig", err)
	}
	for _, want := range []string{"verifier client", "hardware evidence provider", "TPM attester", "runtime key", "key name"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
}

func TestReadEventLog(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "log")
	os.WriteFile(p, []byte("events"), 0o644)
	if b, err := ReadEventLog(p); err != nil || string(b) != "events" {
		t.Errorf("ReadEventLog = %q, %v", b, err)
	}
	big := filepath.Join(dir, "big")
	os.WriteFile(big, make([]byte, maxEventLog+1), 0o644)
	if _, err := ReadEventLog(big); err == nil {
		t.Error("ReadEventLog accepted an oversize log")
	}
	if _, err := ReadEventLog(filepath.Join(dir, "missing")); err == nil {
		t.Error("ReadEventLog of a missing file succeeded")
	}
}

// FuzzParseResponses feeds untrusted verifier answers to every parser.
func FuzzParseResponses(f *testing.F) {
	f.Add([]byte(`{"nonce":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA","expires_at":"2025-06-01T12:00:00Z"}`))
	f.Add([]byte(`{"token":"a.eyJqdGkiOiJ4IiwiZXhwIjoxfQ.c"}`))
	f.Add([]byte(`{"jwe":"a.b.c.d.e"}`))
	f.Add([]byte(`{"error":"evidence_denied","reasons":["x","y"]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		if _, err := parseChallenge(b); err != nil && !errors.Is(err, ErrResponse) {
			t.Fatalf("parseChallenge error %v", err)
		}
		if _, err := parseToken(b); err != nil && !errors.Is(err, ErrResponse) {
			t.Fatalf("parseToken error %v", err)
		}
		for _, ct := range []string{"application/json", "application/jose"} {
			if _, err := parseRelease(b, ct); err != nil && !errors.Is(err, ErrResponse) {
				t.Fatalf("parseRelease error %v", err)
			}
		}
		e := parseAPIError(403, nil, b)
		if strings.ContainsAny(e.Error(), "\n\r\x1b") {
			t.Fatalf("APIError %q keeps control characters", e.Error())
		}
		_, _ = parseTokenInfo(string(b))
	})
}

// TestReleaseKeyName: a key name outside the API's rule (api.ValidKeyName)
// is refused before anything is sent.
func TestReleaseKeyName(t *testing.T) {
	e := newEnv(t)
	c := e.client(t, 0)
	for _, name := range []string{"", "a/b", "../x", "a b", "-x", "k?v", strings.Repeat("k", 129)} {
		if _, err := c.ReleaseKey(context.Background(), name, "a.b.c"); !errors.Is(err, ErrConfig) {
			t.Errorf("ReleaseKey(%q) = %v, want ErrConfig", name, err)
		}
	}
	if n := e.v.Count("release"); n != 0 {
		t.Errorf("%d release requests sent for invalid names", n)
	}
}
