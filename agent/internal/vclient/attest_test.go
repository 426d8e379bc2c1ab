//go:build cgo

package vclient

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"

	"github.com/confidant-cvm/confidant/agent/internal/vclient/vclienttest"
	"github.com/confidant-cvm/confidant/shared/evidence"
	"github.com/confidant-cvm/confidant/shared/keywrap"
)

func TestAttestReleasesKey(t *testing.T) {
	e := newEnv(t)
	token, key, err := Attest(context.Background(), e.deps(t, e.client(t, 0)))
	checkErr(t, err)
	if !bytes.Equal(key, e.secret) {
		t.Fatalf("released key %x, want %x", key, e.secret)
	}
	if want := []string{"attest#1", "release#1"}; !slices.Equal(e.stages(), want) {
		t.Errorf("attempts %v, want %v", e.stages(), want)
	}
	for route, want := range map[string]int{"challenge": 1, "attest": 1, "release": 1} {
		if got := e.v.Count(route); got != want {
			t.Errorf("%s called %d times, want %d", route, got, want)
		}
	}
	if len(e.clock.slept()) != 0 {
		t.Errorf("slept %v without a failure", e.clock.slept())
	}
	if !slices.Equal(e.v.Audience(), []string{"test-audience"}) {
		t.Errorf("audience asked for %v", e.v.Audience())
	}
	info, err := parseTokenInfo(token)
	if err != nil {
		t.Fatal(err)
	}
	// Only the token's id and expiry are logged, never the token or a key.
	logs := e.logs.String()
	if !strings.Contains(logs, info.ID) {
		t.Errorf("log does not name the token id %s:\n%s", info.ID, logs)
	}
	for _, secret := range []string{token, strings.Split(token, ".")[1], strings.Split(token, ".")[2]} {
		if strings.Contains(logs, secret) {
			t.Errorf("log holds (part of) the token:\n%s", logs)
		}
	}
	for _, a := range e.attempts {
		if strings.Contains(a.String(), token) {
			t.Errorf("progress line holds the token: %s", a)
		}
	}
}

func TestAttestDenied(t *testing.T) {
	e := newEnv(t)
	e.v.Deny = []string{"measurement 1234 has no reference value", "debug\nallowed\x1b[31m"}
	_, key, err := Attest(context.Background(), e.deps(t, e.client(t, 0)))
	checkErr(t, err, ErrAttest, ErrAttestDenied)
	if key != nil {
		t.Error("key returned on denial")
	}
	var apiErr *APIError
	if !errors.As(err, &apiErr) || apiErr.Status != http.StatusForbidden || apiErr.Code != "evidence_denied" {
		t.Fatalf("error %v: want the verifier's 403 evidence_denied", err)
	}
	if !strings.Contains(err.Error(), "measurement 1234 has no reference value") {
		t.Errorf("error %q does not carry the verifier's reason", err)
	}
	if strings.ContainsAny(err.Error(), "\n\x1b") {
		t.Errorf("error %q carries control characters from the verifier", err)
	}
	if want := []string{"attest#1!"}; !slices.Equal(e.stages(), want) {
		t.Errorf("attempts %v, want exactly one: %v", e.stages(), want)
	}
	if e.v.Count("attest") != 1 || e.v.Count("release") != 0 || len(e.clock.slept()) != 0 {
		t.Errorf("attest %d, release %d, sleeps %v: a denial must not be retried",
			e.v.Count("attest"), e.v.Count("release"), e.clock.slept())
	}
}

func TestAttestRetries(t *testing.T) {
	unavailable := func(w http.ResponseWriter) {
		vclienttest.WriteAPIError(w, http.StatusServiceUnavailable, "store_unavailable", "the verifier's store is unavailable; retry later")
	}
	tests := map[string]struct {
		inject     func(w http.ResponseWriter, r *http.Request, route string, n int) bool
		timeout    time.Duration
		wantStages []string
		wantSleeps []time.Duration
		wantCalls  map[string]int
	}{
		"5xx then success": {
			inject: func(w http.ResponseWriter, _ *http.Request, route string, n int) bool {
				if route == "attest" && n <= 2 {
					unavailable(w)
					return true
				}
				return false
			},
			wantStages: []string{"attest#1!", "attest#2!", "attest#3", "release#1"},
			wantSleeps: []time.Duration{time.Second, 2 * time.Second},
			// A fresh challenge for every attempt: the verifier spent the
			// nonce of the failed one.
			wantCalls: map[string]int{"challenge": 3, "attest": 3, "release": 1},
		},
		"challenge timeout then success": {
			inject: func(w http.ResponseWriter, r *http.Request, route string, n int) bool {
				if route == "challenge" && n == 1 {
					select {
					case <-r.Context().Done():
					case <-time.After(10 * time.Second):
					}
					return true
				}
				return false
			},
			timeout:    time.Second, // long enough for an attempt under -race
			wantStages: []string{"challenge#1!", "attest#2", "release#1"},
			wantSleeps: []time.Duration{time.Second},
			wantCalls:  map[string]int{"challenge": 2, "attest": 1, "release": 1},
		},
		"429 with Retry-After": {
			inject: func(w http.ResponseWriter, _ *http.Request, route string, n int) bool {
				if route == "challenge" && n == 1 {
					w.Header().Set("Retry-After", "3")
					vclienttest.WriteAPIError(w, http.StatusTooManyRequests, "rate_limited", "too many requests; retry later")
					return true
				}
				return false
			},
			wantStages: []string{"challenge#1!", "attest#2", "release#1"},
			wantSleeps: []time.Duration{3 * time.Second},
			wantCalls:  map[string]int{"challenge": 2, "attest": 1, "release": 1},
		},
		"408 retried": {
			inject: func(w http.ResponseWriter, _ *http.Request, route string, n int) bool {
				if route == "challenge" && n == 1 {
					w.WriteHeader(http.StatusRequestTimeout)
					return true
				}
				return false
			},
			wantStages: []string{"challenge#1!", "attest#2", "release#1"},
			wantSleeps: []time.Duration{time.Second},
			wantCalls:  map[string]int{"challenge": 2, "attest": 1, "release": 1},
		},
		"release 5xx then success": {
			inject: func(w http.ResponseWriter, _ *http.Request, route string, n int) bool {
				if route == "release" && n == 1 {
					w.WriteHeader(http.StatusBadGateway)
					return true
				}
				return false
			},
			wantStages: []string{"attest#1", "release#1!", "release#2"},
			wantSleeps: []time.Duration{time.Second},
			wantCalls:  map[string]int{"challenge": 1, "attest": 1, "release": 2},
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t)
			e.v.Inject = tt.inject
			_, key, err := Attest(context.Background(), e.deps(t, e.client(t, tt.timeout)))
			checkErr(t, err)
			if !bytes.Equal(key, e.secret) {
				t.Errorf("key %x, want %x", key, e.secret)
			}
			if !slices.Equal(e.stages(), tt.wantStages) {
				t.Errorf("attempts %v, want %v", e.stages(), tt.wantStages)
			}
			if !slices.Equal(e.clock.slept(), tt.wantSleeps) {
				t.Errorf("slept %v, want %v", e.clock.slept(), tt.wantSleeps)
			}
			for route, want := range tt.wantCalls {
				if got := e.v.Count(route); got != want {
					t.Errorf("%s called %d times, want %d", route, got, want)
				}
			}
		})
	}
}

func TestAttestFinal(t *testing.T) {
	tests := map[string]struct {
		inject     func(w http.ResponseWriter, r *http.Request, route string, n int) bool
		wrap       func(jwk.Key) ([]byte, error)
		wantErr    []error
		wantStages []string
	}{
		"release denied": {
			inject: func(w http.ResponseWriter, _ *http.Request, route string, _ int) bool {
				if route == "release" {
					vclienttest.WriteAPIError(w, http.StatusForbidden, "release_denied", "policy os-disk: status is warning")
					return true
				}
				return false
			},
			wantErr:    []error{ErrRelease},
			wantStages: []string{"attest#1", "release#1!"},
		},
		"nonce rejected": {
			inject: func(w http.ResponseWriter, _ *http.Request, route string, _ int) bool {
				if route == "attest" {
					vclienttest.WriteAPIError(w, http.StatusUnauthorized, "nonce_expired", "the nonce has expired")
					return true
				}
				return false
			},
			wantErr:    []error{ErrAttest},
			wantStages: []string{"attest#1!"},
		},
		"malformed challenge": {
			inject: func(w http.ResponseWriter, _ *http.Request, route string, _ int) bool {
				if route == "challenge" {
					vclienttest.WriteJSON(w, http.StatusOK, map[string]string{"nonce": "c2hvcnQ"})
					return true
				}
				return false
			},
			wantErr:    []error{ErrChallenge, ErrResponse},
			wantStages: []string{"challenge#1!"},
		},
		"oversize token": {
			inject: func(w http.ResponseWriter, _ *http.Request, route string, _ int) bool {
				if route == "attest" {
					vclienttest.WriteJSON(w, http.StatusOK, map[string]string{"token": strings.Repeat("a", maxTokenBody)})
					return true
				}
				return false
			},
			wantErr:    []error{ErrAttest, ErrResponse},
			wantStages: []string{"attest#1!"},
		},
		"redirect": {
			inject: func(w http.ResponseWriter, r *http.Request, route string, _ int) bool {
				if route == "challenge" {
					http.Redirect(w, r, "http://attacker.example/v1/challenge", http.StatusTemporaryRedirect)
					return true
				}
				return false
			},
			wantErr:    []error{ErrChallenge},
			wantStages: []string{"challenge#1!"},
		},
		"malformed JWE": {
			inject: func(w http.ResponseWriter, _ *http.Request, route string, _ int) bool {
				if route == "release" {
					vclienttest.WriteJSON(w, http.StatusOK, map[string]string{"jwe": "eyJhbGciOiJub25lIn0.a.b.c.d"})
					return true
				}
				return false
			},
			wantErr:    []error{ErrUnwrap, keywrap.ErrMalformed},
			wantStages: []string{"attest#1", "release#1"},
		},
		"JWE to another runtime key": {
			wrap: func(jwk.Key) ([]byte, error) {
				other, err := rsa.GenerateKey(rand.Reader, 2048)
				if err != nil {
					return nil, err
				}
				k, err := jwk.Import(&other.PublicKey)
				if err != nil {
					return nil, err
				}
				return keywrap.Wrap([]byte("someone else's key"), k)
			},
			wantErr:    []error{ErrUnwrap, keywrap.ErrDecrypt},
			wantStages: []string{"attest#1", "release#1"},
		},
		"release with an unknown content type": {
			inject: func(w http.ResponseWriter, _ *http.Request, route string, _ int) bool {
				if route == "release" {
					w.Header().Set("Content-Type", "text/plain")
					_, _ = w.Write([]byte("a.b.c.d.e"))
					return true
				}
				return false
			},
			wantErr:    []error{ErrRelease, ErrResponse},
			wantStages: []string{"attest#1", "release#1!"},
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t)
			e.v.Inject, e.v.Wrap = tt.inject, tt.wrap
			_, key, err := Attest(context.Background(), e.deps(t, e.client(t, 0)))
			checkErr(t, err, tt.wantErr...)
			if key != nil {
				t.Error("key returned with an error")
			}
			if !slices.Equal(e.stages(), tt.wantStages) {
				t.Errorf("attempts %v, want %v", e.stages(), tt.wantStages)
			}
			if len(e.clock.slept()) != 0 {
				t.Errorf("slept %v: a final failure must not be retried", e.clock.slept())
			}
		})
	}
}

func TestAttestJOSERelease(t *testing.T) {
	e := newEnv(t)
	e.v.Inject = func(w http.ResponseWriter, r *http.Request, route string, _ int) bool {
		if route != "release" {
			return false
		}
		// Answer the JWE as application/jose, wrapped by the real handler.
		rec := httptest.NewRecorder()
		e.v.Release(rec, r)
		var body struct{ JWE string }
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
			t.Error(err)
		}
		w.Header().Set("Content-Type", "application/jose")
		_, _ = w.Write([]byte(body.JWE))
		return true
	}
	_, key, err := Attest(context.Background(), e.deps(t, e.client(t, 0)))
	checkErr(t, err)
	if !bytes.Equal(key, e.secret) {
		t.Errorf("key %x, want %x", key, e.secret)
	}
}

func TestAttestBudget(t *testing.T) {
	t.Run("attempts", func(t *testing.T) {
		e := newEnv(t)
		e.v.Inject = func(w http.ResponseWriter, _ *http.Request, route string, _ int) bool {
			w.WriteHeader(http.StatusInternalServerError)
			return true
		}
		d := e.deps(t, e.client(t, 0))
		d.Retry.MaxAttempts = 3
		_, _, err := Attest(context.Background(), d)
		checkErr(t, err, ErrChallenge, ErrBudgetExhausted)
		if want := []string{"challenge#1!", "challenge#2!", "challenge#3!"}; !slices.Equal(e.stages(), want) {
			t.Errorf("attempts %v, want %v", e.stages(), want)
		}
		if want := []time.Duration{time.Second, 2 * time.Second}; !slices.Equal(e.clock.slept(), want) {
			t.Errorf("slept %v, want %v", e.clock.slept(), want)
		}
	})
	t.Run("default attempts outlast fast failures", func(t *testing.T) {
		// Through hostd's relay a down verifier fails each attempt at once;
		// the time budget, not the attempt count, must end the retries.
		e := newEnv(t)
		e.v.Inject = func(w http.ResponseWriter, _ *http.Request, route string, _ int) bool {
			w.WriteHeader(http.StatusServiceUnavailable)
			return true
		}
		d := e.deps(t, e.client(t, 0))
		d.Retry = Retry{Budget: time.Minute}
		d.Jitter = func(ceil time.Duration) time.Duration { return ceil / 4 }
		_, _, err := Attest(context.Background(), d)
		checkErr(t, err, ErrChallenge, ErrBudgetExhausted)
		var slept time.Duration
		for _, s := range e.clock.slept() {
			slept += s
		}
		if n := len(e.attempts); n <= 10 || slept < 50*time.Second {
			t.Errorf("%d attempts over %v of a 1m budget: the attempt count ended the retries, not the budget", n, slept)
		}
	})
	t.Run("time", func(t *testing.T) {
		e := newEnv(t)
		e.v.Inject = func(w http.ResponseWriter, _ *http.Request, route string, _ int) bool {
			if route == "attest" {
				w.WriteHeader(http.StatusServiceUnavailable)
				return true
			}
			return false
		}
		d := e.deps(t, e.client(t, 0))
		d.Retry = Retry{Budget: 5 * time.Second, MaxAttempts: 100, BaseDelay: 2 * time.Second, MaxDelay: 30 * time.Second}
		_, _, err := Attest(context.Background(), d)
		checkErr(t, err, ErrAttest, ErrBudgetExhausted)
		// 2 s fits the 5 s budget, the next 4 s does not.
		if want := []time.Duration{2 * time.Second}; !slices.Equal(e.clock.slept(), want) {
			t.Errorf("slept %v, want %v", e.clock.slept(), want)
		}
		if n := len(e.attempts); n != 2 {
			t.Errorf("%d attempts, want 2", n)
		}
	})
	t.Run("connection refused", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		e := newEnv(t)
		u, _ := url.Parse("https://" + addr)
		c, err := New(Config{URL: u, RootCAs: x509.NewCertPool()})
		if err != nil {
			t.Fatal(err)
		}
		d := e.deps(t, c)
		d.Retry.MaxAttempts = 3
		_, _, err = Attest(context.Background(), d)
		checkErr(t, err, ErrChallenge, ErrBudgetExhausted)
		if len(e.attempts) != 3 {
			t.Errorf("attempts %v, want 3 (connection refused is retried)", e.stages())
		}
	})
}

func TestAttestTLS(t *testing.T) {
	e := newEnv(t)
	other, err := LoadCAFile(writeCA(t)) // a CA that did not sign the verifier's certificate
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(e.srv.URL)
	c, err := New(Config{URL: u, RootCAs: other})
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = Attest(context.Background(), e.deps(t, c))
	checkErr(t, err, ErrChallenge)
	var unknown x509.UnknownAuthorityError
	if !errors.As(err, &unknown) {
		t.Errorf("error %v: want an unknown authority", err)
	}
	if want := []string{"challenge#1!"}; !slices.Equal(e.stages(), want) {
		t.Errorf("attempts %v, want %v: a certificate that does not verify is final", e.stages(), want)
	}
	if e.v.Count("challenge") != 0 {
		t.Error("the verifier was reached over an unverified connection")
	}
}

func TestAttestPlainHTTP(t *testing.T) {
	e := newEnv(t)
	plain := httptest.NewServer(e.v.Handler())
	defer plain.Close()
	u, _ := url.Parse(plain.URL)
	if _, err := New(Config{URL: u}); !errors.Is(err, ErrConfig) {
		t.Fatalf("New with http and no AllowPlainHTTP = %v, want ErrConfig", err)
	}
	c, err := New(Config{URL: u, AllowPlainHTTP: true, Log: e.logger()})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(e.logs.String(), "plain HTTP") {
		t.Errorf("no warning logged for plain HTTP:\n%s", e.logs.String())
	}
	_, key, err := Attest(context.Background(), e.deps(t, c))
	checkErr(t, err)
	if !bytes.Equal(key, e.secret) {
		t.Error("wrong key over plain HTTP")
	}
}

// failingQuoter fails to produce hardware evidence.
type failingQuoter struct{}

func (failingQuoter) Kind() evidence.Kind { return evidence.KindSimSNP }
func (failingQuoter) Quote(context.Context, [64]byte) ([]byte, []byte, error) {
	return nil, nil, errors.New("virtio port gone")
}

func TestAttestEvidenceFailure(t *testing.T) {
	e := newEnv(t)
	d := e.deps(t, e.client(t, 0))
	d.Quoter = failingQuoter{}
	_, _, err := Attest(context.Background(), d)
	checkErr(t, err, ErrEvidence)
	if want := []string{"evidence#1!"}; !slices.Equal(e.stages(), want) {
		t.Errorf("attempts %v, want %v", e.stages(), want)
	}
	if e.v.Count("attest") != 0 {
		t.Error("evidence posted after a failure to collect it")
	}

	e = newEnv(t)
	d = e.deps(t, e.client(t, 0))
	d.EventLog = func() ([]byte, error) { return nil, errors.New("no securityfs") }
	_, _, err = Attest(context.Background(), d)
	checkErr(t, err, ErrEvidence)
	if e.v.Count("challenge") != 0 {
		t.Error("challenge asked for without an event log")
	}
}

func TestAttestContextCancelled(t *testing.T) {
	e := newEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	e.v.Inject = func(w http.ResponseWriter, _ *http.Request, route string, _ int) bool {
		cancel()
		w.WriteHeader(http.StatusServiceUnavailable)
		return true
	}
	_, _, err := Attest(ctx, e.deps(t, e.client(t, 0)))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Attest = %v, want context.Canceled", err)
	}
	if len(e.clock.slept()) != 0 {
		t.Errorf("slept %v after cancellation", e.clock.slept())
	}
}

func TestToken(t *testing.T) {
	e := newEnv(t)
	d := e.deps(t, e.client(t, 0).WithAudience("workload-a"))
	d.KeyName = "" // not needed without a release
	d.Workload = json.RawMessage(`{"nonce":"n-1"}`)
	tok, err := Token(context.Background(), d)
	checkErr(t, err)
	c, err := e.v.ParseToken(tok)
	if err != nil {
		t.Fatal(err)
	}
	if string(c.Runtime.Data) != `{"nonce":"n-1"}` {
		t.Errorf("workload in token %s", c.Runtime.Data)
	}
	if !slices.Equal(e.v.Audience(), []string{"workload-a"}) {
		t.Errorf("audience asked for %v, want the one WithAudience set", e.v.Audience())
	}
	if e.v.Count("release") != 0 {
		t.Error("Token asked for a key release")
	}
	if want := []string{"attest#1"}; !slices.Equal(e.stages(), want) {
		t.Errorf("attempts %v, want %v", e.stages(), want)
	}
}

func TestSession(t *testing.T) {
	t.Run("token then release", func(t *testing.T) {
		e := newEnv(t)
		s, err := Begin(e.deps(t, e.client(t, 0)))
		checkErr(t, err)
		tok, err := s.Token(context.Background())
		checkErr(t, err)
		key, err := s.Release(context.Background(), tok)
		checkErr(t, err)
		if !bytes.Equal(key, e.secret) {
			t.Errorf("key %x, want %x", key, e.secret)
		}
	})
	t.Run("release needs a key name", func(t *testing.T) {
		e := newEnv(t)
		d := e.deps(t, e.client(t, 0))
		d.KeyName = ""
		s, err := Begin(d)
		checkErr(t, err)
		tok, err := s.Token(context.Background())
		checkErr(t, err)
		if _, err := s.Release(context.Background(), tok); !errors.Is(err, ErrConfig) {
			t.Errorf("Release without a key name = %v, want ErrConfig", err)
		}
		if e.v.Count("release") != 0 {
			t.Error("release asked for without a key name")
		}
	})
	t.Run("one budget", func(t *testing.T) {
		// The token's retries spend 3 s of a 4 s budget; the wait after the
		// release's first failure spends the rest, and no time is left for
		// a second release attempt.
		e := newEnv(t)
		e.v.Inject = func(w http.ResponseWriter, _ *http.Request, route string, n int) bool {
			if (route == "attest" && n <= 2) || route == "release" {
				w.WriteHeader(http.StatusServiceUnavailable)
				return true
			}
			return false
		}
		d := e.deps(t, e.client(t, 0))
		d.Retry = Retry{Budget: 4 * time.Second, MaxAttempts: 10, BaseDelay: time.Second, MaxDelay: 8 * time.Second}
		s, err := Begin(d)
		checkErr(t, err)
		tok, err := s.Token(context.Background())
		checkErr(t, err)
		_, err = s.Release(context.Background(), tok)
		checkErr(t, err, ErrRelease, ErrBudgetExhausted)
		if want := []time.Duration{time.Second, 2 * time.Second}; !slices.Equal(e.clock.slept()[:2], want) {
			t.Errorf("slept %v, want %v first", e.clock.slept(), want)
		}
		if n := e.v.Count("release"); n != 1 {
			t.Errorf("release tried %d times, want 1: the token's retries spent the budget", n)
		}
	})
	t.Run("missing parts", func(t *testing.T) {
		if _, err := Begin(Deps{}); !errors.Is(err, ErrConfig) {
			t.Errorf("Begin(Deps{}) = %v, want ErrConfig", err)
		}
	})
}
