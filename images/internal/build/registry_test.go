package build

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/confidant-cvm/confidant/images/internal/encrypt"
	"github.com/confidant-cvm/confidant/images/internal/keyregistry"
	"github.com/confidant-cvm/confidant/images/internal/keyregistry/admintest"
)

// registryFixture is what builds registering keys need: a real verifier,
// its admin client, the installed cloud kernel, busybox as a stand-in
// static agent, a tiny root directory.
type registryFixture struct {
	v      *admintest.Verifier
	client *keyregistry.Client
	kernel string
	root   string
	keys   string // a directory for key files
}

func newRegistryFixture(t *testing.T, v *admintest.Verifier) registryFixture {
	t.Helper()
	ks, _ := filepath.Glob("/boot/vmlinuz-*-cloud-amd64")
	if len(ks) == 0 {
		t.Fatal("no cloud kernel (install linux-image-cloud-amd64)")
	}
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "etc", "hostname"), []byte("tiny\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := keyregistry.NewClient(v.Socket, 0)
	if err != nil {
		t.Fatal(err)
	}
	keys := filepath.Join(dir, "keys")
	if err := os.Mkdir(keys, 0o700); err != nil {
		t.Fatal(err)
	}
	return registryFixture{v: v, client: c, kernel: ks[0], root: root, keys: keys}
}

// spec is a sim build registering key keyName with the fixture's verifier.
func (fx registryFixture) spec(t *testing.T, keyName string) Spec {
	cfg := goodAgentConfig()
	cfg.KeyName = keyName
	return Spec{Name: "tiny", Version: "1", RootFS: fx.root, Kernel: fx.kernel, Agent: "/bin/busybox",
		Out: filepath.Join(t.TempDir(), "out"), AgentConfig: cfg, Cmdline: "console=ttyS0", VCPUs: []int{1, 2},
		Registry: fx.client, KeyOrigin: KeyOriginPlatform, Boot: BootDirect}
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// opens runs cryptsetup open --test-passphrase with a key file.
func opens(disk, keyFile string) error {
	out, err := exec.Command("cryptsetup", "open", "--test-passphrase", "--key-file", keyFile, disk).CombinedOutput()
	if err != nil {
		return errors.New(strings.TrimSpace(string(out)))
	}
	return nil
}

// TestBuildWithVerifier: builds register their key with a real verifier,
// with the release policy, and a failed build leaves no key there.
func TestBuildWithVerifier(t *testing.T) {
	bin := admintest.Build(t, t.TempDir())
	fx := newRegistryFixture(t, admintest.StartBinary(t, bin))
	t.Run("registers", fx.testRegisters)
	t.Run("undoes", fx.testUndoes)
	t.Run("verifier gone", func(t *testing.T) { testVerifierGone(t, bin) })
}

func (fx registryFixture) testRegisters(t *testing.T) {
	ctx := context.Background()
	existing := filepath.Join(fx.keys, "existing.key")
	if _, err := encrypt.CreateKeyFile(existing, nil); err != nil {
		t.Fatal(err)
	}
	ownPolicy := []byte("package own\n\nresult := {\"allow\": false, \"reasons\": [\"never\"]}\n")
	tests := map[string]struct {
		origin   string
		keyFile  string // "new": a new file in fx.keys
		generate bool
		policy   []byte
	}{
		"platform":                {origin: KeyOriginPlatform},
		"platform, recovery copy": {origin: KeyOriginPlatform, keyFile: "new"},
		"customer, generated":     {origin: KeyOriginCustomer, keyFile: "new", generate: true},
		"customer, key file":      {origin: KeyOriginCustomer, keyFile: existing},
		"own release policy":      {origin: KeyOriginPlatform, policy: ownPolicy},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			keyName := strings.NewReplacer(" ", "-", ",", "").Replace(name)
			s := fx.spec(t, keyName)
			s.KeyOrigin, s.GenerateKey, s.ReleasePolicy = tc.origin, tc.generate, tc.policy
			s.KeyFile = tc.keyFile
			if tc.keyFile == "new" {
				s.KeyFile = filepath.Join(fx.keys, keyName+".key")
			}
			m, err := Build(ctx, s, quiet())
			if err != nil {
				t.Fatalf("Build: %v", err)
			}
			policy, err := os.ReadFile(filepath.Join(s.Out, ReleasePolicyFile))
			if err != nil {
				t.Fatal(err)
			}
			if tc.policy != nil && !bytes.Equal(policy, tc.policy) {
				t.Errorf("the output's release policy is not the one given:\n%s", policy)
			}
			// The verifier holds the key with exactly that policy.
			k, err := fx.client.GetKey(ctx, keyName)
			if err != nil {
				t.Fatalf("the key is not on the verifier: %v", err)
			}
			if k.ReleasePolicy != string(policy) || k.ReleasePolicySHA256 != sha256Hex(policy) || k.Origin != tc.origin || k.LatestVersion != 1 {
				t.Errorf("verifier's key: %+v", k)
			}
			// The manifest records it.
			var got Manifest
			if b, err := os.ReadFile(filepath.Join(s.Out, ManifestFile)); err != nil || json.Unmarshal(b, &got) != nil {
				t.Fatalf("reading the manifest: %v", err)
			}
			if got.KeyName != keyName || got.KeyOrigin != tc.origin || got.KeyVersion != 1 || got.ReleasePolicy != ReleasePolicyFile ||
				got.ReleasePolicySHA256 != k.ReleasePolicySHA256 || got.Files[ReleasePolicyFile].SHA256 != k.ReleasePolicySHA256 || got.KeyVersion != m.KeyVersion {
				t.Errorf("manifest: %+v", got)
			}
			// The generated policy names the build's measurements.
			if tc.policy == nil {
				for _, mm := range got.Measurements {
					if !strings.Contains(string(policy), `"`+mm.Measurement+`"`) {
						t.Errorf("the release policy lacks measurement %s", mm.Measurement)
					}
				}
			}
			// The disk opens with the key file (the recovery copy for a
			// platform key), never with another key.
			disk := filepath.Join(s.Out, OSDiskFile)
			if s.KeyFile != "" {
				if err := opens(disk, s.KeyFile); err != nil {
					t.Errorf("the disk does not open with %s: %v", s.KeyFile, err)
				}
				if st, err := os.Stat(s.KeyFile); err != nil || st.Mode().Perm() != 0o600 {
					t.Errorf("key file: %v, %v", st.Mode(), err)
				}
			}
			wrong := filepath.Join(t.TempDir(), "wrong.key")
			if _, err := encrypt.CreateKeyFile(wrong, nil); err != nil {
				t.Fatal(err)
			}
			if err := opens(disk, wrong); err == nil {
				t.Error("the disk opens with a random key")
			}
		})
	}
	// A platform key without a copy left no file: only the verifier has it.
	ents, _ := os.ReadDir(fx.keys)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if want := []string{"customer-generated.key", "existing.key", "platform-recovery-copy.key"}; !slices.Equal(names, want) {
		t.Errorf("key files %v, want %v", names, want)
	}
}

// testUndoes: a build failing after its key was registered deletes it; one
// failing before leaves the verifier as it was, an existing key included.
func (fx registryFixture) testUndoes(t *testing.T) {
	ctx := context.Background()
	if _, err := fx.client.CreateKey(ctx, keyregistry.CreateKeyRequest{Name: "taken"}); err != nil {
		t.Fatal(err)
	}
	taken, err := fx.client.GetKey(ctx, "taken")
	if err != nil {
		t.Fatal(err)
	}
	notExt4 := filepath.Join(t.TempDir(), "plain.img")
	if err := os.WriteFile(notExt4, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := map[string]struct {
		mod     func(s *Spec, cancel func())
		wantErr error
		// early: nothing was built (the failure came before the first step)
		early bool
	}{
		"canceled while encrypting": {mod: func(s *Spec, cancel func()) {
			s.KeyFile = filepath.Join(fx.keys, "canceled.key")
			s.Progress = func(done, total int64) { cancel() }
		}, wantErr: context.Canceled},
		"customer key, canceled while encrypting": {mod: func(s *Spec, cancel func()) {
			s.KeyOrigin, s.GenerateKey, s.KeyFile = KeyOriginCustomer, true, filepath.Join(fx.keys, "canceled-customer.key")
			s.Progress = func(done, total int64) { cancel() }
		}, wantErr: context.Canceled},
		"root not ext4": {mod: func(s *Spec, _ func()) { s.RootFS = notExt4 }, wantErr: encrypt.ErrNotExt4},
		"recovery copy unwritable": {mod: func(s *Spec, _ func()) {
			s.KeyFile = filepath.Join(fx.keys, "no-such-dir", "k.key")
		}, wantErr: os.ErrNotExist},
		"policy refused by the verifier": {mod: func(s *Spec, _ func()) {
			s.ReleasePolicy = []byte("package p\nresult := \n")
		}, wantErr: keyregistry.ErrInvalidPolicy},
		"name taken": {mod: func(s *Spec, _ func()) {
			s.AgentConfig.KeyName = "taken"
		}, wantErr: keyregistry.ErrKeyExists, early: true},
		"name taken, customer key": {mod: func(s *Spec, _ func()) {
			s.AgentConfig.KeyName = "taken"
			s.KeyOrigin, s.GenerateKey, s.KeyFile = KeyOriginCustomer, true, filepath.Join(fx.keys, "taken.key")
		}, wantErr: keyregistry.ErrKeyExists, early: true},
		// Taken between the build's check and its create: the verifier
		// refuses, and the key that was there stays.
		"name taken meanwhile": {mod: func(s *Spec, _ func()) {
			s.AgentConfig.KeyName = "taken"
			s.Registry = tamperRegistry{Registry: fx.client, getUnknown: true}
		}, wantErr: keyregistry.ErrKeyExists},
		"verifier stored another policy": {mod: func(s *Spec, _ func()) {
			s.Registry = tamperRegistry{Registry: fx.client, policySuffix: "\n# changed\n"}
		}, wantErr: keyregistry.ErrBadAnswer},
		"verifier returned a short key": {mod: func(s *Spec, _ func()) {
			s.Registry = tamperRegistry{Registry: fx.client, truncate: true}
		}, wantErr: keyregistry.ErrBadAnswer},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			keyName := strings.NewReplacer(" ", "-", ",", "").Replace(name)
			s := fx.spec(t, keyName)
			ctx, cancel := context.WithCancel(ctx)
			defer cancel()
			tc.mod(&s, cancel)
			var steps []string
			s.Step = func(step string) { steps = append(steps, step) }
			m, err := Build(ctx, s, quiet())
			if tc.early != (len(steps) == 0) {
				t.Errorf("steps %q before the failure", steps)
			}
			if err == nil {
				t.Fatalf("Build succeeded: %+v", m)
			}
			if !errors.Is(err, tc.wantErr) || errors.Is(err, ErrKeyLeft) {
				t.Errorf("Build: %v, want %v", err, tc.wantErr)
			}
			if ents, _ := os.ReadDir(filepath.Dir(s.Out)); len(ents) != 0 {
				t.Errorf("a failed build left %v", ents)
			}
			if s.KeyFile != "" {
				if _, err := os.Stat(s.KeyFile); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("a failed build left its key file: %v", err)
				}
			}
			if s.AgentConfig.KeyName == "taken" {
				return
			}
			if _, err := fx.client.GetKey(context.Background(), keyName); !errors.Is(err, keyregistry.ErrKeyUnknown) {
				t.Errorf("a failed build left key %s on the verifier: %v", keyName, err)
			}
		})
	}
	// The existing key was not touched.
	if k, err := fx.client.GetKey(ctx, "taken"); err != nil || !k.UpdatedAt.Equal(taken.UpdatedAt) || k.LatestVersion != 1 {
		t.Errorf("the existing key: %+v, %v", k, err)
	}
	if ents, _ := os.ReadDir(fx.keys); slices.ContainsFunc(ents, func(e os.DirEntry) bool { return strings.Contains(e.Name(), "tmp") }) {
		t.Errorf("temporary key files left: %v", ents)
	}
}

// tamperRegistry is the verifier's admin API with one thing wrong.
type tamperRegistry struct {
	Registry
	// getUnknown: GetKey says no key exists.
	getUnknown bool
	// policySuffix is appended to the release policy sent.
	policySuffix string
	// truncate: the returned key loses a byte.
	truncate bool
}

func (r tamperRegistry) GetKey(ctx context.Context, name string) (*keyregistry.Key, error) {
	if r.getUnknown {
		return nil, keyregistry.ErrKeyUnknown
	}
	return r.Registry.GetKey(ctx, name)
}

func (r tamperRegistry) CreateKey(ctx context.Context, req keyregistry.CreateKeyRequest) (*keyregistry.KeyResponse, error) {
	req.ReleasePolicy += r.policySuffix
	resp, err := r.Registry.CreateKey(ctx, req)
	if err == nil && r.truncate {
		resp.KeyMaterial = resp.KeyMaterial[1:]
	}
	return resp, err
}

// testVerifierGone: when the verifier cannot be reached to delete the key
// after a failure, the error says the key is left, and names it.
func testVerifierGone(t *testing.T, bin string) {
	v := admintest.StartBinary(t, bin)
	fx := newRegistryFixture(t, v)
	s := fx.spec(t, "left-behind")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var once sync.Once
	s.Progress = func(done, total int64) {
		once.Do(func() {
			v.Stop()
			cancel()
		})
	}
	_, err := Build(ctx, s, quiet())
	if !errors.Is(err, ErrKeyLeft) || !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "admin key delete left-behind") {
		t.Errorf("Build: %v, want ErrKeyLeft naming the key", err)
	}
	if ents, _ := os.ReadDir(filepath.Dir(s.Out)); len(ents) != 0 {
		t.Errorf("a failed build left %v", ents)
	}
	// Unreachable from the start: nothing is done.
	s = fx.spec(t, "never")
	if _, err := Build(context.Background(), s, quiet()); err == nil || errors.Is(err, ErrKeyLeft) || !strings.Contains(err.Error(), "asking the verifier whether key never exists") {
		t.Errorf("Build with the verifier gone: %v", err)
	}
}
