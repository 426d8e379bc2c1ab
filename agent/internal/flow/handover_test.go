//go:build cgo

package flow

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-tpm-tools/simulator"
	"github.com/lestrrat-go/jwx/v3/jwk"

	"github.com/confidant-cvm/confidant/agent/internal/boot"
	"github.com/confidant-cvm/confidant/agent/internal/config"
	"github.com/confidant-cvm/confidant/agent/internal/console"
	"github.com/confidant-cvm/confidant/agent/internal/disks"
	"github.com/confidant-cvm/confidant/agent/internal/pipeline"
	"github.com/confidant-cvm/confidant/agent/internal/quote"
	"github.com/confidant-cvm/confidant/agent/internal/vclient"
	"github.com/confidant-cvm/confidant/agent/internal/vclient/vclienttest"
	"github.com/confidant-cvm/confidant/agent/internal/vtpm"
	"github.com/confidant-cvm/confidant/shared/keywrap"
	"github.com/confidant-cvm/confidant/shared/tee/snp/sim"
)

// The test binary's guest: one TPM simulator per process (tests using it
// never run in parallel), with a recorded boot's event log extended into
// it, and the simulated AMD secure processor.
var (
	tpmSim *simulator.Simulator
	signer *sim.Signer
)

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	g, err := vclienttest.StartGuest("confidant-flow-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer g.Close()
	tpmSim, signer = g.TPM, g.Signer
	return m.Run()
}

// sharedTPM is the simulator behind a vtpm.Device: Close is recorded and
// leaves the simulator open for the next test.
type sharedTPM struct {
	io.ReadWriter
	closed *bool
}

func (s sharedTPM) Close() error { *s.closed = true; return nil }

// trackedSource records that the TEE interface was closed.
type trackedSource struct {
	quote.Source
	closed *bool
}

func (s trackedSource) Close() error { *s.closed = true; return s.Source.Close() }

const testUUID = "3f1c2b6a-1111-4222-8333-444455556666"

// rig runs the stages from attest on against a TLS test verifier, with the
// TPM simulator, the simulated TEE and recording stand-ins for the disks
// and switch_root.
type rig struct {
	t      *testing.T
	v      *vclienttest.Verifier
	srv    *httptest.Server
	secret []byte
	cfg    *config.Config
	hw     Hardware
	runDir string
	out    syncBuffer
	logs   syncBuffer
	halted bool
	agent  *Agent
	// before, if set, runs on the agent before its stages (from attest on).
	before  func(a *Agent)
	results struct {
		tpmClosed, teeClosed bool
		osDisk               disks.OSDisk
		osKey                []byte // the slice OpenOS got (the agent's)
		osKeyCopy            []byte // its value at the call
		temp                 *disks.TempDisk
		tempKey              []byte
		switched             []string
		atSwitch             struct{ keyZero, tpmClosed, teeClosed bool }
	}
}

func newRig(t *testing.T) *rig {
	t.Helper()
	r := &rig{t: t, secret: bytes.Repeat([]byte{0xa5}, 32), runDir: filepath.Join(t.TempDir(), "run")}
	v, err := vclienttest.NewVerifier(signer.RootCert(), r.secret)
	if err != nil {
		t.Fatal(err)
	}
	r.v = v
	r.srv = v.ServeTLS(t)

	dir := t.TempDir()
	ca := filepath.Join(dir, "verifier-ca.pem")
	writeTestFile(t, ca, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: r.srv.Certificate().Raw})))
	u, _ := url.Parse(r.srv.URL)
	r.cfg = &config.Config{
		VerifierURL: u, CAFile: ca, TokenAudience: "boot-test", KeyName: vclienttest.DefaultKeyName,
		OSDiskUUID: testUUID, RootMount: "/sysroot", TempDevice: "/dev/vdb", TempMount: "/mnt/resource",
		TempAllowReset: true, TempSwapSize: 64 << 20, TEE: config.TEESim, SimPort: config.DefaultSimPort,
		RetryBudget: 5 * time.Second, DeviceTimeout: time.Second, OnFailure: config.PowerOff,
	}
	r.hw = Hardware{
		OpenTPM: func(context.Context, time.Duration) (*vtpm.Device, error) {
			return vtpm.New(sharedTPM{ReadWriter: tpmSim, closed: &r.results.tpmClosed})
		},
		OpenQuoter: func(tee boot.TEE, simPort string) (quote.Source, error) {
			if tee.Kind != config.TEESim || simPort != config.DefaultSimPort {
				return nil, fmt.Errorf("unexpected TEE %+v, port %q", tee, simPort)
			}
			return trackedSource{Source: vclienttest.SimQuoter(t, signer), closed: &r.results.teeClosed}, nil
		},
		EventLog: func() ([]byte, error) { return vclienttest.EventLog(), nil },
		OpenOS: func(_ context.Context, d disks.OSDisk, key []byte) (string, error) {
			r.results.osDisk, r.results.osKey, r.results.osKeyCopy = d, key, bytes.Clone(key)
			return "/dev/mapper/" + disks.DefaultOSName, nil
		},
		SetupTemp: func(_ context.Context, d disks.TempDisk, key []byte) (*disks.TempResult, error) {
			r.results.temp, r.results.tempKey = &d, bytes.Clone(key)
			return &disks.TempResult{UUID: "0d0d0d0d-1111-4222-8333-444455556666", Found: disks.TempBlank, Formatted: true,
				Mapper: "/dev/mapper/" + disks.DefaultTempName, Swap: filepath.Join(d.Mount, disks.DefaultSwapFile)}, nil
		},
		InMemory: func(string) error { return nil },
		// Not BindFile: the tests must not leave mounts on the host.
		PlaceAgent: func(src, dst string) error { return copyFile(src, dst, 0o755) },
		SwitchRoot: func(newRoot, init string, argv, env []string) error {
			r.results.switched = []string{newRoot, init}
			r.results.atSwitch.keyZero = r.results.osKey != nil && !slices.ContainsFunc(r.results.osKey, func(b byte) bool { return b != 0 })
			r.results.atSwitch.tpmClosed, r.results.atSwitch.teeClosed = r.results.tpmClosed, r.results.teeClosed
			return nil // as if init ran and returned: the flow fails at handover
		},
	}
	return r
}

// run runs the stages from attest on with the state the earlier stages
// would have left, then the failure path, and returns the failure.
func (r *rig) run() *pipeline.Failure {
	r.t.Helper()
	dir := r.t.TempDir()
	cfgPath := filepath.Join(dir, "agent.yaml")
	writeTestFile(r.t, cfgPath, "# the configuration file\n")
	self := filepath.Join(dir, "init")
	writeTestFile(r.t, self, "agent binary")
	var clock time.Time
	a := New(Options{
		ConfigPath: cfgPath, Self: self, RunDir: r.runDir, Env: []string{"TERM=linux"},
		Console:  console.New(&r.out, func() time.Duration { return time.Second }),
		Log:      slog.New(slog.NewTextHandler(&r.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Hardware: r.hw,
		Now:      func() time.Time { clock = clock.Add(250 * time.Millisecond); return clock },
		Halt:     func(bool) error { r.halted = true; return nil },
	})
	r.agent = a
	a.st.Config = r.cfg
	a.st.TEE = boot.TEE{Kind: config.TEESim, Path: "/dev/vport0p1"}
	a.st.OSDisk = boot.BlockDevice{Name: "vda", Path: "/dev/vda", LUKSUUID: testUUID}
	a.st.TempDisk = r.cfg.TempDevice
	if r.before != nil {
		r.before(a)
	}
	all := a.Stages()
	i := slices.IndexFunc(all, func(s pipeline.Stage) bool { return s.Name() == "attest" })
	err := a.run(context.Background(), all[i:])
	if err := a.Fail(err); err != nil {
		r.t.Fatal(err)
	}
	var f *pipeline.Failure
	if !errors.As(err, &f) {
		r.t.Fatalf("run = %v, want a *pipeline.Failure", err)
	}
	return f
}

// checkNoSecrets fails if the console or the log holds the key, the token
// or a part of the token that identifies it.
func (r *rig) checkNoSecrets() {
	r.t.Helper()
	text := r.out.String() + r.logs.String()
	secrets := map[string]string{
		"key (hex)":       hex.EncodeToString(r.secret),
		"key (base64url)": base64.RawURLEncoding.EncodeToString(r.secret),
		"key (base64)":    base64.StdEncoding.EncodeToString(r.secret),
		"key (raw)":       string(r.secret),
	}
	if b, err := os.ReadFile(filepath.Join(r.runDir, config.RunTokenFile)); err == nil {
		parts := strings.Split(string(b), ".")
		secrets["token"], secrets["token payload"], secrets["token signature"] = string(b), parts[1], parts[2]
	}
	for what, s := range secrets {
		if s != "" && strings.Contains(text, s) {
			r.t.Errorf("the console or log holds the %s:\n%s", what, text)
		}
	}
}

func TestHandover(t *testing.T) {
	r := newRig(t)
	f := r.run()
	want := []string{"attest", "release", "unlock", "tempdisk", "switchroot"}
	if f.Stage != "handover" || !errors.Is(f, ErrNoHandover) || !slices.Equal(f.Completed, want) {
		t.Fatalf("failure %v, completed %v; want handover after %v\n%s", f, f.Completed, want, r.out.String())
	}
	out := r.out.String()
	for _, w := range []string{
		"] attest: vTPM ready",
		"] attest: token jti=",
		"] release: key released (32 bytes), name os-disk",
		"] unlock: OS disk opened (/dev/mapper/confidant-root), mounted on /sysroot",
		"] tempdisk: /dev/vdb (/dev/mapper/confidant-temp, was blank, LUKS2 UUID 0d0d0d0d-1111-4222-8333-444455556666) formatted, mounted on /mnt/resource, swap /mnt/resource/swapfile",
		"] switchroot: token and agent configuration left in " + r.runDir,
		"] switchroot: stage times: attest=0.250s release=0.250s unlock=0.250s tempdisk=0.250s total=1.000s",
		"] switchroot: handing over to /sbin/init",
	} {
		if !strings.Contains(out, w) {
			t.Errorf("console lacks %q:\n%s", w, out)
		}
	}
	if !slices.Equal(r.v.Audience(), []string{"boot-test"}) {
		t.Errorf("token asked for audience %v", r.v.Audience())
	}

	// The disks got the released key and the configured places.
	if !bytes.Equal(r.results.osKeyCopy, r.secret) || !bytes.Equal(r.results.tempKey, r.secret) {
		t.Error("the disks did not get the released key")
	}
	if d := r.results.osDisk; d != (disks.OSDisk{Device: "/dev/vda", UUID: testUUID, Mount: "/sysroot"}) {
		t.Errorf("OS disk %+v", d)
	}
	if d := r.results.temp; d == nil || d.Device != "/dev/vdb" || d.Mount != "/sysroot/mnt/resource" || !d.AllowReset || d.SwapSize != 64<<20 {
		t.Errorf("temp disk %+v", d)
	}

	// Before init: key zeroed, TPM and TEE closed, switch to the OS root.
	if !slices.Equal(r.results.switched, []string{"/sysroot", "/sbin/init"}) {
		t.Errorf("switch_root %v", r.results.switched)
	}
	if !r.results.atSwitch.keyZero || !r.results.atSwitch.tpmClosed || !r.results.atSwitch.teeClosed {
		t.Errorf("at switch_root: key zeroed %v, TPM closed %v, TEE closed %v; want all",
			r.results.atSwitch.keyZero, r.results.atSwitch.tpmClosed, r.results.atSwitch.teeClosed)
	}

	// The run directory holds the token (root only) and what the post-boot
	// service reads.
	tok, err := os.ReadFile(filepath.Join(r.runDir, config.RunTokenFile))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.v.ParseToken(string(tok)); err != nil {
		t.Errorf("token.jwt: %v", err)
	}
	for name, want := range map[string]struct {
		mode    os.FileMode
		content string
	}{
		config.RunTokenFile:  {0o600, string(tok)},
		config.RunConfigFile: {0o644, "# the configuration file\n"},
		config.RunCAFile:     {0o644, ""},
		config.RunAgentFile:  {0o755, "agent binary"},
	} {
		fi, err := os.Stat(filepath.Join(r.runDir, name))
		if err != nil {
			t.Error(err)
			continue
		}
		if fi.Mode().Perm() != want.mode {
			t.Errorf("%s mode %v, want %v", name, fi.Mode().Perm(), want.mode)
		}
		b, _ := os.ReadFile(filepath.Join(r.runDir, name))
		if want.content != "" && string(b) != want.content {
			t.Errorf("%s holds %q, want %q", name, b, want.content)
		}
	}
	r.checkNoSecrets()
	if !r.halted {
		t.Error("not halted after the failure")
	}
}

func TestHandoverFailures(t *testing.T) {
	errWrongKey := fmt.Errorf("unlocking OS disk /dev/vda: keyslot 0: %w", disks.ErrWrongKey)
	tests := map[string]struct {
		setup func(r *rig)
		// wantStage is where the flow fails, wantErr what the error matches
		// and wantLine what the FAILED line says.
		wantStage string
		wantErr   []error
		wantLine  string
		// wantKey: the key was released (and must be zeroed by now).
		wantKey bool
		// wantTokenFile: the token was left in the run directory (in
		// memory; the guest powers off).
		wantTokenFile bool
	}{
		"no TPM": {
			setup: func(r *rig) {
				r.hw.OpenTPM = func(ctx context.Context, wait time.Duration) (*vtpm.Device, error) {
					return vtpm.Open(ctx, "/nonexistent/tpmrm0", 100*time.Millisecond)
				}
			},
			wantStage: "attest", wantErr: []error{vtpm.ErrNoTPM}, wantLine: "FAILED at attest: opening TPM: no TPM device (waited 100ms): open /nonexistent/tpmrm0",
		},
		"no TEE interface": {
			setup: func(r *rig) {
				r.hw.OpenQuoter = func(boot.TEE, string) (quote.Source, error) { return nil, quote.ErrNoTEE }
			},
			wantStage: "attest", wantErr: []error{quote.ErrNoTEE}, wantLine: "FAILED at attest: opening TEE interface sim at /dev/vport0p1: no TEE interface",
		},
		"wrong CA": {
			setup: func(r *rig) {
				// httptest servers all share one certificate: make another CA.
				k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
				if err != nil {
					r.t.Fatal(err)
				}
				tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "other CA"},
					NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
					BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
				der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
				if err != nil {
					r.t.Fatal(err)
				}
				writeTestFile(r.t, r.cfg.CAFile, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
			},
			wantStage: "attest", wantErr: []error{vclient.ErrChallenge},
			wantLine: "FAILED at attest: getting a challenge: Post \"https://127.0.0.1:",
		},
		"evidence denied": {
			setup:     func(r *rig) { r.v.Deny = []string{"measurement abc has no reference value"} },
			wantStage: "attest", wantErr: []error{vclient.ErrAttest, vclient.ErrAttestDenied},
			wantLine: "FAILED at attest: attesting: verifier denied the evidence: POST /v1/attest: verifier answered 403 evidence_denied: measurement abc has no reference value",
		},
		"verifier down for the whole budget": {
			setup: func(r *rig) {
				ln, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					r.t.Fatal(err)
				}
				r.cfg.VerifierURL, _ = url.Parse("https://" + ln.Addr().String())
				ln.Close()
				r.cfg.RetryBudget = 1500 * time.Millisecond
			},
			wantStage: "attest", wantErr: []error{vclient.ErrChallenge, vclient.ErrBudgetExhausted},
			wantLine: "FAILED at attest: getting a challenge: retry budget exhausted",
		},
		"release denied": {
			setup: func(r *rig) {
				r.v.Inject = func(w http.ResponseWriter, _ *http.Request, route string, _ int) bool {
					if route != "release" {
						return false
					}
					vclienttest.WriteAPIError(w, http.StatusForbidden, "release_denied", "policy os-disk: status is warning")
					return true
				}
			},
			wantStage: "release", wantErr: []error{vclient.ErrRelease},
			wantLine: "FAILED at release: releasing the key: POST /v1/keys/os-disk/release: verifier answered 403 release_denied: policy os-disk: status is warning",
		},
		"JWE to another key": {
			setup: func(r *rig) {
				r.v.Wrap = func(jwk.Key) ([]byte, error) {
					other, err := rsa.GenerateKey(rand.Reader, 2048)
					if err != nil {
						return nil, err
					}
					k, err := jwk.Import(&other.PublicKey)
					if err != nil {
						return nil, err
					}
					return keywrap.Wrap([]byte("someone else's key"), k)
				}
			},
			wantStage: "release", wantErr: []error{vclient.ErrUnwrap, keywrap.ErrDecrypt},
			wantLine: "FAILED at release: unwrapping the released key: ",
		},
		"OS disk refuses the key": {
			setup: func(r *rig) {
				r.hw.OpenOS = func(_ context.Context, _ disks.OSDisk, key []byte) (string, error) {
					r.results.osKey = key
					return "", errWrongKey
				}
			},
			wantStage: "unlock", wantErr: []error{disks.ErrWrongKey}, wantKey: true,
			wantLine: "FAILED at unlock: unlocking OS disk /dev/vda: keyslot 0: the released key does not open the disk",
		},
		"foreign temp disk": {
			setup: func(r *rig) {
				r.hw.SetupTemp = func(context.Context, disks.TempDisk, []byte) (*disks.TempResult, error) {
					return nil, fmt.Errorf("temp disk: %w (reset not allowed)", disks.ErrForeign)
				}
			},
			wantStage: "tempdisk", wantErr: []error{disks.ErrForeign}, wantKey: true,
			wantLine: "FAILED at tempdisk: temp disk: temp disk holds a LUKS2 volume the released key does not open (reset not allowed)",
		},
		"temp disk is the OS disk": {
			setup: func(r *rig) {
				r.cfg.TempDevice = "/dev/vda"
				r.hw.SetupTemp = func(context.Context, disks.TempDisk, []byte) (*disks.TempResult, error) {
					t.Error("SetupTemp called on the OS disk")
					return nil, errors.New("called")
				}
			},
			wantStage: "tempdisk", wantErr: []error{ErrTempIsOSDisk}, wantKey: true,
			wantLine: "FAILED at tempdisk: temp disk /dev/vda: it is the OS disk",
		},
		"run directory on a disk": {
			setup: func(r *rig) {
				r.hw.InMemory = func(dir string) error { return fmt.Errorf("%s: %w", dir, ErrNotInMemory) }
			},
			wantStage: "switchroot", wantErr: []error{ErrNotInMemory}, wantKey: true,
		},
		"switch_root fails": {
			setup: func(r *rig) {
				r.hw.SwitchRoot = func(string, string, []string, []string) error {
					return fmt.Errorf("switching root to /sysroot: %w", disks.ErrNotMountPoint)
				}
			},
			wantStage: "switchroot", wantErr: []error{disks.ErrNotMountPoint}, wantKey: true, wantTokenFile: true,
			wantLine: "FAILED at switchroot: switching root to /sysroot: new root is not a mount point",
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			r := newRig(t)
			tt.setup(r)
			f := r.run()
			t.Logf("console:\n%s", r.out.String())
			if f.Stage != tt.wantStage {
				t.Errorf("failed at %s (%v), want %s\n%s", f.Stage, f.Err, tt.wantStage, r.out.String())
			}
			for _, w := range tt.wantErr {
				if !errors.Is(f, w) {
					t.Errorf("error %v does not match %v", f.Err, w)
				}
			}
			out := r.out.String()
			if tt.wantLine != "" && !strings.Contains(out, "confidant-agent: "+tt.wantLine) {
				t.Errorf("console lacks %q:\n%s", tt.wantLine, out)
			}
			if n := strings.Count(out, "FAILED at"); n != 1 {
				t.Errorf("%d FAILED lines:\n%s", n, out)
			}
			if !strings.Contains(out, "stage times: attest=") || !strings.Contains(out, `"failed_stage":"`+tt.wantStage+`"`) {
				t.Errorf("no stage times or summary:\n%s", out)
			}
			// Whatever failed: the key is zeroed, the TPM and TEE closed.
			if tt.wantKey && (r.results.osKey == nil || slices.ContainsFunc(r.results.osKey, func(b byte) bool { return b != 0 })) {
				t.Errorf("the released key was not zeroed: %x", r.results.osKey)
			}
			if r.agent.key != nil || r.agent.token != "" || r.agent.tpm != nil || r.agent.quoter != nil {
				t.Error("the agent still holds the key, the token, the TPM or the TEE interface")
			}
			if opened := name != "no TPM"; r.results.tpmClosed != opened {
				t.Errorf("TPM opened %v, closed %v", opened, r.results.tpmClosed)
			}
			if _, err := os.Stat(filepath.Join(r.runDir, config.RunTokenFile)); (err == nil) != tt.wantTokenFile {
				t.Errorf("token file left: %v, want %v", err == nil, tt.wantTokenFile)
			}
			if !r.halted {
				t.Error("not halted")
			}
			r.checkNoSecrets()
		})
	}
}

func writeTestFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// syncBuffer is a bytes.Buffer safe for concurrent writers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
