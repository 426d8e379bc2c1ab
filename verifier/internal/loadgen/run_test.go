package loadgen

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io/fs"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwe"
	"github.com/lestrrat-go/jwx/v3/jwk"

	"github.com/confidant-cvm/confidant/shared/evidence"
	"github.com/confidant-cvm/confidant/verifier/internal/release"
	"github.com/confidant-cvm/confidant/verifier/internal/server"
)

// releaseFunc answers POST /v1/keys/{name}/release; n counts calls from 1.
type releaseFunc func(t *testing.T, n int64, w http.ResponseWriter, r *http.Request)

// startVerifier serves the real verifier (in process) configured from s,
// with release answered by release (nil: the verifier's own endpoint).
func startVerifier(t *testing.T, s *Setup, trustSim bool, release releaseFunc) string {
	return startVerifierWrapped(t, s, trustSim, release, nil)
}

// startVerifierWrapped is startVerifier with the handler wrapped by wrap
// (nil: not wrapped).
func startVerifierWrapped(t *testing.T, s *Setup, trustSim bool, release releaseFunc, wrap func(http.Handler) http.Handler) string {
	t.Helper()
	cfg := server.DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	cfg.StateDir = t.TempDir()
	cfg.Policies = []string{s.Path(PolicyFile)}
	cfg.ReferenceValues = s.Path(ReferenceFile)
	cfg.RateLimit = 0
	cfg.Issuer = "http://verifier.test"
	if trustSim {
		cfg.SimRoot = s.Path(RootFile)
	}
	srv, err := server.New(context.Background(), cfg, nil, server.Options{})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/", srv.Handler)
	if release != nil {
		var calls atomic.Int64
		mux.HandleFunc("POST /v1/keys/{name}/release", func(w http.ResponseWriter, r *http.Request) {
			release(t, calls.Add(1), w, r)
		})
	}
	var h http.Handler = mux
	if wrap != nil {
		h = wrap(mux)
	}
	hs := httptest.NewServer(h)
	t.Cleanup(func() {
		hs.Close()
		srv.Close()
	})
	return hs.URL
}

func setup(t *testing.T) *Setup {
	t.Helper()
	s, err := Init(filepath.Join(t.TempDir(), "lg"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// releaseTo answers with secret as a JWE to the runtime key the token
// names, the way the verifier's release endpoint does.
func releaseTo(t *testing.T, w http.ResponseWriter, r *http.Request, secret []byte) {
	parts := strings.Split(strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "), ".")
	var payload []byte
	if len(parts) == 3 {
		payload, _ = base64.RawURLEncoding.DecodeString(parts[1])
	}
	var claims struct {
		Runtime struct {
			Keys struct {
				Keys []json.RawMessage `json:"keys"`
			} `json:"keys"`
		} `json:"runtime"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil || len(claims.Runtime.Keys.Keys) != 1 {
		t.Errorf("release: token payload %s: %v", payload, err)
		http.Error(w, "no runtime key", http.StatusForbidden)
		return
	}
	runtime := claims.Runtime
	key, err := jwk.ParseKey(runtime.Keys.Keys[0])
	if err != nil {
		t.Errorf("release: runtime key: %v", err)
		return
	}
	msg, err := jwe.Encrypt(secret, jwe.WithKey(jwa.RSA_OAEP_256(), key), jwe.WithContentEncryption(jwa.A256GCM()))
	if err != nil {
		t.Errorf("release: %v", err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]string{"jwe": string(msg)})
}

func TestRun(t *testing.T) {
	s := setup(t)
	secret := []byte("disk key: 32 bytes of key matter")
	tests := map[string]struct {
		trustSim    bool
		kind        evidence.Kind
		release     releaseFunc
		expected    []byte
		concurrency int
		requests    int
		wantOK      int
		wantErrors  map[string]int
	}{
		"attest only": {trustSim: true, concurrency: 4, requests: 20, wantOK: 20},
		"with release": {
			trustSim: true, concurrency: 4, requests: 20, wantOK: 20,
			release: func(t *testing.T, n int64, w http.ResponseWriter, r *http.Request) { releaseTo(t, w, r, secret) },
		},
		"one agent gets another key": {
			trustSim: true, concurrency: 1, requests: 5, wantOK: 4,
			release: func(t *testing.T, n int64, w http.ResponseWriter, r *http.Request) {
				if n == 3 {
					releaseTo(t, w, r, []byte("another key"))
					return
				}
				releaseTo(t, w, r, secret)
			},
			wantErrors: map[string]int{CodeReleaseMismatch: 1},
		},
		"release of a key other than the expected": {
			trustSim: true, concurrency: 2, requests: 4, expected: []byte("the key the admin API returned"),
			release:    func(t *testing.T, n int64, w http.ResponseWriter, r *http.Request) { releaseTo(t, w, r, secret) },
			wantErrors: map[string]int{CodeReleaseMismatch: 4},
		},
		"release of the expected key": {
			trustSim: true, concurrency: 2, requests: 4, expected: secret, wantOK: 4,
			release: func(t *testing.T, n int64, w http.ResponseWriter, r *http.Request) { releaseTo(t, w, r, secret) },
		},
		"release denied": {
			trustSim: true, concurrency: 2, requests: 6,
			release: func(t *testing.T, n int64, w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusForbidden)
				w.Write([]byte(`{"error":"release_denied","reasons":["policy says no"]}`))
			},
			wantErrors: map[string]int{"release_denied": 6},
		},
		"JWE to another key": {
			trustSim: true, concurrency: 2, requests: 4,
			release: func(t *testing.T, n int64, w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/jose")
				w.Write([]byte("eyJhbGciOiJSU0EtT0FFUC0yNTYiLCJlbmMiOiJBMjU2R0NNIn0.a.b.c.d"))
			},
			wantErrors: map[string]int{CodeUnwrapFailed: 4},
		},
		"unknown key": {
			trustSim: true, concurrency: 2, requests: 4,
			release:    nil, // the verifier's own release endpoint
			wantErrors: map[string]int{"key_unknown": 4},
		},
		"simulation not trusted": {
			trustSim: false, concurrency: 3, requests: 9,
			wantErrors: map[string]int{"evidence_denied": 9},
		},
		"labelled sev-snp": {
			trustSim: true, kind: evidence.KindSNP, concurrency: 2, requests: 4,
			wantErrors: map[string]int{"evidence_denied": 4},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			url := startVerifier(t, s, tc.trustSim, tc.release)
			client, err := NewClient(ClientConfig{BaseURL: url, Connections: tc.concurrency})
			if err != nil {
				t.Fatal(err)
			}
			defer client.Close()
			cfg := Config{Client: client, Signer: s.Signer, Kind: tc.kind, Concurrency: tc.concurrency, Requests: tc.requests, ExpectedKey: tc.expected}
			withRelease := strings.Contains(name, "release") || strings.Contains(name, "key")
			if withRelease {
				cfg.ReleaseKey = "os-disk"
			}
			rep, err := Run(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			failures := 0
			for code, n := range tc.wantErrors {
				failures += n
				if rep.Errors[code] != n {
					t.Errorf("errors[%s] = %d, want %d", code, rep.Errors[code], n)
				}
			}
			if rep.Flows != tc.requests || rep.Successes != tc.wantOK || rep.Failures != failures || len(rep.Errors) != len(tc.wantErrors) {
				t.Errorf("flows %d, successes %d, failures %d, errors %v (%v); want %d, %d, %d",
					rep.Flows, rep.Successes, rep.Failures, rep.Errors, rep.ErrorExamples, tc.requests, tc.wantOK, failures)
			}
			if rep.Release != withRelease || (rep.Steps[StepRelease] != nil) != withRelease {
				t.Errorf("release %v, steps %v", rep.Release, rep.Steps)
			}
			if tc.wantOK > 0 && (rep.Token == "" || rep.Flow.Count != tc.wantOK) {
				t.Errorf("token %q, flow %+v", rep.Token, rep.Flow)
			}
			if tc.wantOK == 0 && rep.Token != "" {
				t.Error("a token without a successful flow")
			}
		})
	}
}

func TestRunDuration(t *testing.T) {
	s := setup(t)
	url := startVerifier(t, s, true, nil)
	client, err := NewClient(ClientConfig{BaseURL: url, Connections: 2})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	rep, err := Run(context.Background(), Config{Client: client, Signer: s.Signer, Concurrency: 2, Duration: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	// It ran for its duration (a lower bound; how long past it the last
	// flows took depends on the machine's load, so no upper one).
	if rep.Successes == 0 || rep.Failures != 0 || time.Since(start) < 200*time.Millisecond {
		t.Errorf("successes %d, failures %d (%v) after %v", rep.Successes, rep.Failures, rep.Errors, time.Since(start))
	}
	// Cancelling stops early (the run is for an hour) and cut-short flows
	// are not errors: the verifier cancels the run while it answers the
	// tenth attestation, so that flows are in flight.
	const cancelAt, concurrency = 10, 2
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var attests atomic.Int64
	url = startVerifierWrapped(t, s, true, nil, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/v1/attest" && attests.Add(1) == cancelAt {
				cancel()
			}
			next.ServeHTTP(w, r)
		})
	})
	client, err = NewClient(ClientConfig{BaseURL: url, Connections: concurrency})
	if err != nil {
		t.Fatal(err)
	}
	rep, err = Run(ctx, Config{Client: client, Signer: s.Signer, Concurrency: concurrency, Duration: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	// What the cancel leaves is fixed by order, not by timing: a success
	// needs its attestation answered before the cancel, so the tenth and
	// any later one are never counted; each of the two agents runs its
	// flows one after another, so of the attestations before the tenth only
	// the one flow per agent in flight at the cancel can be cut short.
	if rep.Failures != 0 || rep.Successes > cancelAt-1 || rep.Successes < cancelAt-concurrency {
		t.Errorf("cancelled run: successes %d, failures %v; want %d to %d and none",
			rep.Successes, rep.Errors, cancelAt-concurrency, cancelAt-1)
	}
	if n := attests.Load(); n < cancelAt {
		t.Errorf("the verifier saw %d attestations, fewer than the %d that cancel the run", n, cancelAt)
	}
}

// TestRunOpenLoop: with a rate, flows are due rate per second and no
// earlier; all of them run.
func TestRunOpenLoop(t *testing.T) {
	s := setup(t)
	url := startVerifier(t, s, true, nil)
	client, err := NewClient(ClientConfig{BaseURL: url, Connections: 4})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	rep, err := Run(context.Background(), Config{Client: client, Signer: s.Signer, Concurrency: 4, Requests: 12, Rate: 100})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Successes != 12 || rep.Failures != 0 || rep.Rate != 100 {
		t.Errorf("successes %d, failures %d (%v), rate %v", rep.Successes, rep.Failures, rep.Errors, rep.Rate)
	}
	// The 12th flow is due 110 ms after the first.
	if d := time.Since(start); d < 110*time.Millisecond {
		t.Errorf("12 flows at 100/s took %v", d)
	}
}

// TestSchedule: due times are start + k/rate, also for flows handed out
// late because no agent was free, so their latency includes the wait.
func TestSchedule(t *testing.T) {
	start := time.Now()
	n := 0
	due := schedule(context.Background(), start, 1000, func() bool { n++; return n <= 5 })
	for k := range 5 {
		if k == 2 {
			time.Sleep(20 * time.Millisecond) // every agent busy
		}
		got, ok := <-due
		if want := start.Add(time.Duration(k) * time.Millisecond); !ok || !got.Equal(want) {
			t.Fatalf("flow %d due %v (ok %v), want %v", k, got.Sub(start), ok, want.Sub(start))
		}
	}
	if _, ok := <-due; ok {
		t.Error("a sixth flow was scheduled")
	}
	ctx, cancel := context.WithCancel(context.Background())
	due = schedule(ctx, time.Now().Add(time.Hour), 1, func() bool { return true })
	cancel()
	if _, ok := <-due; ok {
		t.Error("a cancelled schedule sent a flow")
	}
}

func TestRunConfig(t *testing.T) {
	s := setup(t)
	client, err := NewClient(ClientConfig{BaseURL: "http://127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	tests := map[string]struct {
		cfg  Config
		want string
	}{
		"no client":        {Config{Signer: s.Signer, Concurrency: 1, Requests: 1}, "no verifier client"},
		"no signer":        {Config{Client: client, Concurrency: 1, Requests: 1}, "no simulated signer"},
		"no concurrency":   {Config{Client: client, Signer: s.Signer, Requests: 1}, "concurrency 0"},
		"no amount":        {Config{Client: client, Signer: s.Signer, Concurrency: 1}, "number of requests or a duration"},
		"both amounts":     {Config{Client: client, Signer: s.Signer, Concurrency: 1, Requests: 1, Duration: time.Second}, "not both"},
		"negative":         {Config{Client: client, Signer: s.Signer, Concurrency: 1, Requests: -1}, "requests -1"},
		"TDX not possible": {Config{Client: client, Signer: s.Signer, Concurrency: 1, Requests: 1, Kind: evidence.KindTDX}, "TEE kind"},
		"negative rate":    {Config{Client: client, Signer: s.Signer, Concurrency: 1, Requests: 1, Rate: -1}, "rate -1"},
		"NaN rate":         {Config{Client: client, Signer: s.Signer, Concurrency: 1, Requests: 1, Rate: math.NaN()}, "rate NaN"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if _, err := Run(context.Background(), tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Run: %v, want an error containing %q", err, tc.want)
			}
		})
	}
	// Nothing listens on port 1: every flow fails in transport.
	rep, err := Run(context.Background(), Config{Client: client, Signer: s.Signer, Concurrency: 2, Requests: 4})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Errors[CodeTransportRefused] != 4 || rep.Steps[StepChallenge].Errors[CodeTransportRefused] != 4 {
		t.Errorf("errors %v", rep.Errors)
	}
}

func TestInit(t *testing.T) {
	s := setup(t)
	for _, f := range []string{RootFile, PolicyFile, ReferenceFile, filepath.Join(SignerDir, "vcek.key")} {
		if _, err := os.Stat(s.Path(f)); err != nil {
			t.Error(err)
		}
	}
	b, err := os.ReadFile(s.Path(ReferenceFile))
	if err != nil {
		t.Fatal(err)
	}
	var ref struct {
		Version int `json:"version"`
		Sim     struct {
			Measurements map[string]struct {
				Name string `json:"name"`
			} `json:"measurements"`
			PCRs map[string]map[string][]string `json:"pcrs"`
		} `json:"sim-sev-snp"`
	}
	if err := json.Unmarshal(b, &ref); err != nil {
		t.Fatal(err)
	}
	if ref.Version != 1 || ref.Sim.Measurements[s.Measurement].Name != MeasurementName ||
		len(ref.Sim.PCRs["sha256"]) != 11 || ref.Sim.PCRs["sha256"]["7"][0] != s.PCRs["7"] {
		t.Errorf("reference values %s", b)
	}
	if _, err := Init(s.Dir); !errors.Is(err, fs.ErrExist) {
		t.Errorf("second Init: %v, want fs.ErrExist", err)
	}
	if _, err := LoadSigner(s.Dir); err != nil {
		t.Error(err)
	}
	if _, err := LoadSigner(t.TempDir()); err == nil {
		t.Error("LoadSigner of an empty directory: no error")
	}
}

func TestSummarize(t *testing.T) {
	var ds []time.Duration
	for i := 100; i >= 1; i-- {
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	got := summarize(ds)
	want := Latency{Count: 100, Mean: 50.5, P50: 50, P90: 90, P99: 99, Max: 100}
	if got != want {
		t.Errorf("summarize = %+v, want %+v", got, want)
	}
	if got := summarize([]time.Duration{3 * time.Millisecond}); got.P50 != 3 || got.P99 != 3 || got.Max != 3 {
		t.Errorf("one sample: %+v", got)
	}
	if got := summarize(nil); got != (Latency{}) {
		t.Errorf("no sample: %+v", got)
	}
}

func TestWriteReport(t *testing.T) {
	rep := &Report{
		TEE: "sim-sev-snp", Concurrency: 2, Release: true, Flows: 3, Successes: 2, Failures: 1,
		Steps: map[string]*StepReport{
			StepChallenge: {Latency: Latency{Count: 3, P50: 1}, Errors: map[string]int{}},
			StepRelease:   {Latency: Latency{Count: 3, P50: 1}, Errors: map[string]int{"release_denied": 1}},
		},
		Errors:        map[string]int{"release_denied": 1},
		ErrorExamples: map[string]string{"release_denied": "verifier answered 403 release_denied: no"},
		RSS:           &RSSStats{Error: "no local process"},
		Token:         "secret.token.value",
	}
	var text, js strings.Builder
	if err := WriteText(&text, rep); err != nil {
		t.Fatal(err)
	}
	if err := WriteJSON(&js, rep); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"with key release", "release_denied", "no local process", "full flow"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text lacks %q:\n%s", want, text.String())
		}
	}
	for _, out := range []string{text.String(), js.String()} {
		if strings.Contains(out, rep.Token) {
			t.Error("a report prints the token")
		}
	}
}

func TestReleasePolicyCompiles(t *testing.T) {
	if _, err := release.CheckPolicy(context.Background(), []byte(ReleasePolicy)); err != nil {
		t.Fatal(err)
	}
}
