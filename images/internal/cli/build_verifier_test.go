package cli

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage/inmem"

	"github.com/confidant-cvm/confidant/images/internal/build"
	"github.com/confidant-cvm/confidant/images/internal/encrypt"
	"github.com/confidant-cvm/confidant/images/internal/keyregistry/admintest"
)

// verifierKey is `confidant-verifier admin key show NAME --json`.
type verifierKey struct {
	Name                string `json:"name"`
	Origin              string `json:"origin"`
	ReleasePolicySHA256 string `json:"release_policy_sha256"`
	ReleasePolicy       string `json:"release_policy"`
	LatestVersion       int    `json:"latest_version"`
}

func showKey(t *testing.T, v *admintest.Verifier, name string) (*verifierKey, error) {
	t.Helper()
	out, err := v.Admin(context.Background(), "--json", "key", "show", name)
	if err != nil {
		return nil, err
	}
	var k verifierKey
	if err := json.Unmarshal([]byte(out), &k); err != nil {
		t.Fatalf("key show: %v\n%s", err, out)
	}
	return &k, nil
}

// releases evaluates a release policy file as the verifier does over the
// claims of an affirmed simulated guest with the given measurement.
func releases(t *testing.T, policyFile, measurement string) (bool, []any) {
	t.Helper()
	src, err := os.ReadFile(policyFile)
	if err != nil {
		t.Fatal(err)
	}
	mod, err := ast.ParseModuleWithOpts("release.rego", string(src), ast.ParserOptions{RegoVersion: ast.RegoV1})
	if err != nil {
		t.Fatal(err)
	}
	claims := map[string]any{"status": "warning", "hwmodel": "confidant simulated AMD SEV-SNP (Milan)", "dbgstat": 3,
		"tee": map[string]any{"kind": "sim-sev-snp", "simulated": true, "measurement": measurement, "policy": map[string]any{"debug": false}}}
	rs, err := rego.New(rego.Query(mod.Package.Path.String()+".result"), rego.ParsedModule(mod),
		rego.Store(inmem.NewFromObject(map[string]any{"key": map[string]any{"name": "k", "version": 1, "origin": "platform"}})),
		rego.Strict(true), rego.StrictBuiltinErrors(true), rego.SetRegoVersion(ast.RegoV1), rego.Input(claims),
	).Eval(context.Background())
	if err != nil || len(rs) != 1 {
		t.Fatalf("evaluating %s: %v", policyFile, err)
	}
	res := rs[0].Expressions[0].Value.(map[string]any)
	reasons, _ := res["reasons"].([]any)
	return res["allow"] == true && len(reasons) == 0, reasons
}

// TestBuildWithVerifier: build --admin-socket registers the disk key with a
// real confidant-verifier (platform-managed or imported) together with the
// release policy for the image's measurements; without --admin-socket the
// printed command does it; a failed build leaves no key.
func TestBuildWithVerifier(t *testing.T) {
	fx := newBuildFixture(t)
	v := admintest.StartBinary(t, admintest.Build(t, fx.dir))
	t.Run("registers", func(t *testing.T) { testBuildRegisters(t, fx, v) })
	t.Run("fails", func(t *testing.T) { testBuildWithVerifierFails(t, fx, v) })
}

func testBuildRegisters(t *testing.T, fx buildFixture, v *admintest.Verifier) {
	existing := filepath.Join(fx.dir, "existing.key")
	if _, err := encrypt.CreateKeyFile(existing, nil); err != nil {
		t.Fatal(err)
	}
	tests := map[string]struct {
		extra      []string // after the common arguments; "KEY": a new key file
		origin     string
		keyFile    string // "", existing or "new"
		wantStdout []string
		register   bool // the build does not register: run the printed command
	}{
		"platform": {extra: []string{"--admin-socket", v.Socket}, origin: "platform",
			wantStdout: []string{`made by the verifier as key "platform" version 1 (platform-managed)`, "no copy was kept"}},
		"platform with recovery copy": {extra: []string{"--admin-socket", v.Socket, "--key-origin", "platform", "--key-file", "KEY"}, origin: "platform", keyFile: "new",
			wantStdout: []string{"recovery copy: "}},
		"customer key file": {extra: []string{"--admin-socket", v.Socket, "--key-file", existing}, origin: "customer", keyFile: existing,
			wantStdout: []string{`imported into the verifier as key "customer-key-file" version 1 (customer-managed)`}},
		"customer generated": {extra: []string{"--admin-socket", v.Socket, "--key-file", "KEY", "--generate-key"}, origin: "customer", keyFile: "new"},
		"by hand":            {extra: []string{"--key-file", "KEY", "--generate-key"}, origin: "customer", keyFile: "new", register: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			keyName := strings.ReplaceAll(name, " ", "-")
			out := filepath.Join(t.TempDir(), "out")
			key := tc.keyFile
			if key == "new" {
				key = filepath.Join(t.TempDir(), "disk.key")
			}
			args := fx.argsNoKey(out, "--key-name", keyName)
			for _, a := range tc.extra {
				if a == "KEY" {
					a = key
				}
				args = append(args, a)
			}
			stdout, stderr, err := runStreams(t, args...)
			if err != nil {
				t.Fatalf("build: %v\n%s", err, stderr)
			}
			for _, want := range tc.wantStdout {
				if !strings.Contains(stdout, want) {
					t.Errorf("stdout lacks %q:\n%s", want, stdout)
				}
			}
			policyFile := filepath.Join(out, build.ReleasePolicyFile)
			if tc.register {
				// The printed command, run as printed (plus the socket).
				var line string
				for _, l := range strings.Split(stdout, "\n") {
					if strings.HasPrefix(strings.TrimSpace(l), "confidant-verifier admin key import ") {
						line = strings.TrimSpace(l)
					}
				}
				want := "confidant-verifier admin key import " + keyName + " --key-file " + key + " --release-policy " + policyFile
				if line != want {
					t.Fatalf("printed %q, want %q", line, want)
				}
				if _, err := v.Admin(context.Background(), strings.Fields(line)[2:]...); err != nil {
					t.Fatalf("running the printed command: %v", err)
				}
			}
			var m build.Manifest
			if b, err := os.ReadFile(filepath.Join(out, build.ManifestFile)); err != nil || json.Unmarshal(b, &m) != nil {
				t.Fatalf("manifest: %v", err)
			}
			policy, err := os.ReadFile(policyFile)
			if err != nil {
				t.Fatal(err)
			}
			sum := sha256.Sum256(policy)
			k, err := showKey(t, v, keyName)
			if err != nil {
				t.Fatalf("key show: %v", err)
			}
			if k.ReleasePolicy != string(policy) || k.ReleasePolicySHA256 != hex.EncodeToString(sum[:]) || k.Origin != tc.origin || k.LatestVersion != 1 {
				t.Errorf("the verifier's key: %+v", k)
			}
			wantVersion := 1
			if tc.register {
				wantVersion = 0
			}
			if m.KeyName != keyName || m.KeyOrigin != tc.origin || m.KeyVersion != wantVersion || m.ReleasePolicySHA256 != k.ReleasePolicySHA256 {
				t.Errorf("manifest: key %s origin %s version %d policy %s", m.KeyName, m.KeyOrigin, m.KeyVersion, m.ReleasePolicySHA256)
			}
			if !strings.Contains(stdout, "release policy: "+policyFile+" (sha256 "+k.ReleasePolicySHA256+")") {
				t.Errorf("stdout lacks the release policy digest:\n%s", stdout)
			}
			// The policy releases to the built measurement, and only to it.
			if allow, reasons := releases(t, policyFile, m.Measurements[0].Measurement); !allow {
				t.Errorf("the release policy refuses the image: %v", reasons)
			}
			if allow, _ := releases(t, policyFile, strings.Repeat("ab", 48)); allow {
				t.Error("the release policy releases to another measurement")
			}
			disk := filepath.Join(out, build.OSDiskFile)
			if key != "" {
				if err := cryptsetupTest(disk, key); err != nil {
					t.Errorf("the disk does not open with %s: %v", key, err)
				}
				kb, err := encrypt.ReadKeyFile(key)
				if err != nil {
					t.Fatal(err)
				}
				if bytes.Contains([]byte(stdout+stderr), kb) || strings.Contains(stdout+stderr, hex.EncodeToString(kb)) {
					t.Error("the key was printed")
				}
			}
			if err := cryptsetupTest(disk, fx.agent); err == nil {
				t.Error("the disk opens with another key")
			}
		})
	}
}

// testBuildWithVerifierFails: refused flags, and failures after the key was
// made, leave no key on the verifier, nothing under --out and no key file.
func testBuildWithVerifierFails(t *testing.T, fx buildFixture, v *admintest.Verifier) {
	notExt4 := filepath.Join(fx.dir, "random.img")
	if err := os.WriteFile(notExt4, bytes.Repeat([]byte("not ext4"), 1<<17), 0o644); err != nil {
		t.Fatal(err)
	}
	badPolicy := filepath.Join(fx.dir, "bad.rego")
	if err := os.WriteFile(badPolicy, []byte("package p\nallow := true\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Admin(context.Background(), "key", "create", "taken"); err != nil {
		t.Fatal(err)
	}
	tests := map[string]struct {
		extra   []string // "KEY": a new key file
		wantErr error
		wantOut string
	}{
		"root not ext4, platform":      {extra: []string{"--admin-socket", v.Socket, "--rootfs", notExt4}, wantErr: encrypt.ErrNotExt4},
		"root not ext4, recovery copy": {extra: []string{"--admin-socket", v.Socket, "--key-origin", "platform", "--key-file", "KEY", "--rootfs", notExt4}, wantErr: encrypt.ErrNotExt4},
		"root not ext4, customer":      {extra: []string{"--admin-socket", v.Socket, "--key-file", "KEY", "--generate-key", "--rootfs", notExt4}, wantErr: encrypt.ErrNotExt4},
		"policy refused":               {extra: []string{"--admin-socket", v.Socket, "--release-policy", badPolicy}, wantOut: "invalid_policy"},
		"key name taken":               {extra: []string{"--admin-socket", v.Socket, "--key-name", "taken"}, wantOut: "key taken is already on the verifier"},
		"platform without socket":      {extra: []string{"--key-origin", "platform"}, wantErr: ErrUsage},
		"unknown origin":               {extra: []string{"--admin-socket", v.Socket, "--key-origin", "hsm"}, wantErr: ErrUsage},
		"no key file, no socket":       {wantErr: ErrUsage},
		"customer without key file":    {extra: []string{"--admin-socket", v.Socket, "--key-origin", "customer"}, wantErr: ErrUsage},
		"platform, generate":           {extra: []string{"--admin-socket", v.Socket, "--key-origin", "platform", "--key-file", "KEY", "--generate-key"}, wantErr: build.ErrSpec},
		"recovery copy exists":         {extra: []string{"--admin-socket", v.Socket, "--key-origin", "platform", "--key-file", fx.agent}, wantErr: build.ErrSpec},
		"policy file missing":          {extra: []string{"--admin-socket", v.Socket, "--release-policy", filepath.Join(fx.dir, "absent.rego")}, wantErr: os.ErrNotExist},
		"socket missing":               {extra: []string{"--admin-socket", filepath.Join(fx.dir, "absent.sock")}, wantOut: "asking the verifier whether key"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			keyName := strings.NewReplacer(" ", "-", ",", "").Replace(name)
			parent := t.TempDir()
			key := filepath.Join(t.TempDir(), "disk.key")
			args := fx.argsNoKey(filepath.Join(parent, "out"), "--key-name", keyName)
			for _, a := range tc.extra {
				if a == "KEY" {
					a = key
				}
				args = append(args, a)
			}
			stdout, stderr, err := runStreams(t, args...)
			if err == nil {
				t.Fatalf("build succeeded:\n%s", stdout)
			}
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Errorf("error %v, want %v", err, tc.wantErr)
			}
			if !strings.Contains(err.Error(), tc.wantOut) || strings.Contains(err.Error(), build.ErrKeyLeft.Error()) {
				t.Errorf("error %q, want one with %q", err, tc.wantOut)
			}
			if ents, _ := os.ReadDir(parent); len(ents) != 0 {
				t.Errorf("a failed build left %v next to --out", ents)
			}
			if _, err := os.Stat(key); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("a failed build left a key file: %v\n%s", err, stderr)
			}
			if name == "key name taken" {
				return
			}
			if k, err := showKey(t, v, keyName); err == nil || !strings.Contains(err.Error(), "key_unknown") {
				t.Errorf("a failed build left key %s on the verifier: %+v, %v", keyName, k, err)
			}
		})
	}
	if k, err := showKey(t, v, "taken"); err != nil || k.Origin != "platform" || k.LatestVersion != 1 {
		t.Errorf("the existing key: %+v, %v", k, err)
	}
}
