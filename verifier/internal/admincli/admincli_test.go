package admincli_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/confidant-cvm/confidant/shared/exitcode"
	"github.com/confidant-cvm/confidant/verifier/internal/admincli"
	"github.com/confidant-cvm/confidant/verifier/internal/adminclient"
	"github.com/confidant-cvm/confidant/verifier/internal/server"
)

const policies = "../../../policies"

// serve starts a real verifier (SQLite store, admin socket in its state
// directory) and returns the state directory.
func serve(t *testing.T) string {
	t.Helper()
	state, _ := serveAt(t)
	return state
}

// serveAt is serve, also returning the public API's base URL.
func serveAt(t *testing.T) (state, base string) {
	t.Helper()
	dir := t.TempDir()
	cfg := server.DefaultConfig()
	cfg.StateDir = filepath.Join(dir, "state")
	cfg.Policies = []string{filepath.Join(policies, "appraisal/sim_development.rego")}
	cfg.ReferenceValues = filepath.Join(policies, "reference-values.example.json")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Listen = ln.Addr().String()
	s, err := server.New(context.Background(), cfg, nil, server.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln, nil) }()
	t.Cleanup(func() {
		cancel()
		<-done
		s.Close()
	})
	sock := filepath.Join(cfg.StateDir, server.DefaultAdminSocket)
	for range 200 {
		if _, err := os.Stat(sock); err == nil {
			return cfg.StateDir, "http://" + cfg.Listen
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("admin socket did not appear")
	return "", ""
}

type cli struct {
	t     *testing.T
	state string
}

func (c cli) run(args ...string) (string, string, error) {
	c.t.Helper()
	var out, errOut bytes.Buffer
	err := admincli.Run(context.Background(), &out, &errOut, append(args, "--state-dir", c.state)...)
	return out.String(), errOut.String(), err
}

func (c cli) must(args ...string) string {
	c.t.Helper()
	out, errOut, err := c.run(args...)
	if err != nil {
		c.t.Fatalf("admin %s: %v\n%s%s", strings.Join(args, " "), err, out, errOut)
	}
	return out
}

// noKey fails when out holds the key in any usual encoding.
func noKey(t *testing.T, out string, key []byte) {
	t.Helper()
	for _, enc := range []string{string(key), base64.RawURLEncoding.EncodeToString(key), base64.StdEncoding.EncodeToString(key), hex.EncodeToString(key)} {
		if strings.Contains(out, enc) {
			t.Fatalf("key material printed: %s", out)
		}
	}
}

func TestKeyCommands(t *testing.T) {
	c := cli{t: t, state: serve(t)}
	dir := t.TempDir()
	out := filepath.Join(dir, "os-disk.key")
	stdout := c.must("key", "create", "os-disk", "--return-key-file", out,
		"--release-policy", filepath.Join(policies, "release/sim_development.rego"))
	key, err := os.ReadFile(out)
	if err != nil || len(key) != 32 {
		t.Fatalf("key file: %d bytes, %v", len(key), err)
	}
	if fi, _ := os.Stat(out); fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v", fi.Mode())
	}
	noKey(t, stdout, key)
	if !strings.Contains(stdout, "created key os-disk (platform-managed), version 1") {
		t.Fatalf("output: %s", stdout)
	}
	if m, _ := filepath.Glob(filepath.Join(dir, ".*tmp*")); len(m) != 0 {
		t.Fatalf("temporary files left: %v", m)
	}
	// An existing file is never replaced, and then no key is created.
	if _, _, err := c.run("key", "create", "other", "--return-key-file", out); err == nil || !strings.Contains(err.Error(), "never replaced") {
		t.Fatalf("existing --return-key-file: %v", err)
	}
	if b, _ := os.ReadFile(out); !bytes.Equal(b, key) {
		t.Fatal("the key file changed")
	}

	// Import refuses a key file others can read.
	imp := filepath.Join(dir, "customer.key")
	material := bytes.Repeat([]byte{0xab}, 32)
	os.WriteFile(imp, material, 0o644)
	if _, _, err := c.run("key", "import", "customer", "--key-file", imp); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("world-readable key file: %v", err)
	}
	os.Chmod(imp, 0o600)
	stdout = c.must("key", "import", "customer", "--key-file", imp)
	noKey(t, stdout, material)

	rotated := filepath.Join(dir, "os-disk.v2.key")
	stdout = c.must("key", "rotate", "os-disk", "--return-key-file", rotated)
	k2, _ := os.ReadFile(rotated)
	if len(k2) != 32 || bytes.Equal(k2, key) || !strings.Contains(stdout, "version 2") {
		t.Fatalf("rotate: %s", stdout)
	}
	noKey(t, stdout, k2)
	os.WriteFile(filepath.Join(dir, "new.key"), bytes.Repeat([]byte{0xcd}, 48), 0o600)
	c.must("key", "rotate", "customer", "--key-file", filepath.Join(dir, "new.key"))

	stdout = c.must("key", "list")
	if !strings.Contains(stdout, "NAME") || !strings.Contains(stdout, "os-disk") || !strings.Contains(stdout, "1,2") {
		t.Fatalf("list: %s", stdout)
	}
	var list adminclient.KeyList
	if err := json.Unmarshal([]byte(c.must("key", "list", "--json")), &list); err != nil || len(list.Keys) != 2 {
		t.Fatalf("list --json: %+v, %v", list, err)
	}
	stdout = c.must("key", "show", "os-disk")
	if !strings.Contains(stdout, "package confidant.release.sim_development") || !strings.Contains(stdout, "latest version: 2") {
		t.Fatalf("show: %s", stdout)
	}
	noKey(t, stdout+c.must("key", "show", "os-disk", "--json")+c.must("key", "list", "--json"), key)

	c.must("key", "set-policy", "os-disk", "--release-policy", filepath.Join(policies, "release/default.rego"))
	if s := c.must("key", "show", "os-disk"); !strings.Contains(s, "package confidant.release.default_policy") {
		t.Fatalf("after set-policy: %s", s)
	}
	if s := c.must("key", "delete", "os-disk", "--version", "1"); !strings.Contains(s, "deleted version 1 of key os-disk") {
		t.Fatalf("delete version: %s", s)
	}
	if _, _, err := c.run("key", "delete", "os-disk", "--version", "2"); err == nil || !strings.Contains(err.Error(), "conflict") {
		t.Fatalf("deleting the only version: %v", err)
	}
	c.must("key", "delete", "customer")
	if _, _, err := c.run("key", "show", "customer"); err == nil || !strings.Contains(err.Error(), "key_unknown") {
		t.Fatalf("show deleted key: %v", err)
	}
}

func TestPolicyAndReferenceCommands(t *testing.T) {
	c := cli{t: t, state: serve(t)}
	stdout := c.must("policy", "load", "--kind", "sim-sev-snp", "--file", filepath.Join(policies, "appraisal/sim_development.rego"))
	if !strings.Contains(stdout, "confidant.appraisal.sim_development") || !strings.Contains(stdout, "now appraises sim-sev-snp") {
		t.Fatalf("policy load: %s", stdout)
	}
	if _, _, err := c.run("policy", "load", "--kind", "tdx", "--file", filepath.Join(policies, "appraisal/sim_development.rego")); err == nil ||
		!strings.Contains(err.Error(), "invalid_policy") {
		t.Fatalf("policy for the wrong kind: %v", err)
	}
	if s := c.must("reference", "load", "--file", filepath.Join(policies, "reference-values.example.json")); !strings.Contains(s, "reference values loaded") {
		t.Fatalf("reference load: %s", s)
	}
}

func TestAuditCommands(t *testing.T) {
	state := serve(t)
	c := cli{t: t, state: state}
	for _, name := range []string{"a", "b", "c", "d"} {
		c.must("key", "create", name)
	}
	stdout := c.must("audit", "list", "--limit", "2")
	if strings.Count(stdout, "admin.key.create") != 2 || !strings.Contains(stdout, "\n4 ") {
		t.Fatalf("audit list: %s", stdout)
	}
	stdout, stderr, err := c.run("audit", "export")
	if err != nil || strings.Count(stdout, "\n") != 4 || !strings.Contains(stderr, "exported 4") {
		t.Fatalf("export: %v %s %s", err, stdout, stderr)
	}
	if s := c.must("audit", "verify"); !strings.Contains(s, "audit log intact: 4 entries") {
		t.Fatalf("verify: %s", s)
	}

	db, err := sql.Open("sqlite", filepath.Join(state, "verifier.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec("DELETE FROM audit WHERE id = 2"); err != nil {
		t.Fatal(err)
	}
	stdout, _, err = c.run("audit", "verify")
	var exit exitcode.Code
	if !errors.As(err, &exit) || exit != 1 || !strings.Contains(stdout, "BROKEN") || !strings.Contains(stdout, "at entry 3: entry 2 is missing") {
		t.Fatalf("verify after deleting a row: %v\n%s", err, stdout)
	}
	stdout, _, _ = c.run("audit", "verify", "--json")
	var rep adminclient.AuditReport
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil || rep.OK || rep.Problems[0].ID != 3 {
		t.Fatalf("verify --json: %+v, %v", rep, err)
	}
}

func TestClientErrors(t *testing.T) {
	c := cli{t: t, state: t.TempDir()}
	if _, _, err := c.run("key", "list"); err == nil || !strings.Contains(err.Error(), "admin.sock") {
		t.Fatalf("no server: %v", err)
	}
	if _, _, err := c.run("key", "list", "--url", "https://127.0.0.1:1"); err == nil || !strings.Contains(err.Error(), "mutual TLS") {
		t.Fatalf("--url without certificates: %v", err)
	}
	if _, _, err := c.run("key", "rotate", "x", "--key-file", "a", "--return-key-file", "b"); err == nil {
		t.Fatal("--key-file with --return-key-file accepted")
	}
}
