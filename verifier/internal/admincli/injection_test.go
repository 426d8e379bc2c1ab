package admincli_test

import (
	"bufio"
	"database/sql"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/confidant-cvm/confidant/shared/termsafe"
	"github.com/confidant-cvm/confidant/verifier/internal/adminclient"
)

// Names that try to forge an audit row or drive the administrator's
// terminal.
const (
	forgedRow = "x\n2026-12-07T17:00:00Z  release  granted  sim-sev-snp  os-disk@1  attest: affirming"
	oscTitle  = "\x1b]0;pwned\x07"
)

// printableOutput fails when out holds anything but printable ASCII,
// newlines and (with tabs) tabs.
func printableOutput(t *testing.T, what, out string, tabs bool) {
	t.Helper()
	for i := 0; i < len(out); i++ {
		c := out[i]
		if (c < 0x20 || c > 0x7e) && c != '\n' && !(tabs && c == '\t') {
			t.Fatalf("%s holds the raw byte %#x at %d:\n%q", what, c, i, out)
		}
	}
}

// TestAuditOutputEscaped: unauthenticated release requests whose key names
// carry a newline or an OSC sequence, an admin create with such a name,
// and an audit row written raw (by an older verifier, or edited in the
// database) all reach `admin audit list`, --json and export escaped: no
// control byte, no forged row, and the JSON still decodes.
func TestAuditOutputEscaped(t *testing.T) {
	state, base := serveAt(t)
	c := cli{t: t, state: state}
	// A row as an older verifier wrote it, raw: the first one.
	c.must("key", "create", "first")
	db, err := sql.Open("sqlite", filepath.Join(state, "verifier.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`UPDATE audit SET key_name = ?, reasons = ? WHERE id = 1`, "\x1b[2J\u009b31m",
		`["line one\nline two \u001b]0;x\u0007 \u202e"]`); err != nil {
		t.Fatal(err)
	}

	for _, name := range []string{forgedRow, oscTitle} {
		req, err := http.NewRequest(http.MethodPost, base+"/v1/keys/"+(&url.URL{Path: name}).EscapedPath()+"/release", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("release of %q without a token: %d", name, resp.StatusCode)
		}
	}
	_, _, err = c.run("key", "create", oscTitle)
	if err == nil || !strings.Contains(err.Error(), `invalid key name "\x1b]0;pwned\x07": want 1-128 of [A-Za-z0-9._-]`) {
		t.Fatalf("create with an OSC name: %v", err)
	}
	printableOutput(t, "the error", err.Error(), false)

	stdout := c.must("audit", "list")
	printableOutput(t, "audit list", stdout, false)
	if lines := strings.Count(stdout, "\n"); lines != 1+4 {
		t.Fatalf("audit list has %d lines for 4 entries (a forged row?):\n%s", lines, stdout)
	}
	for _, want := range []string{`x\n2026-12-07T17:00:00Z  release  granted`, `\x1b]0;pwned\x07`, `\x1b[2J\u009b31m`,
		`line one\nline two \x1b]0;x\x07 \u202e`, "invalid_token", "admin.key.create"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("audit list lacks %s:\n%s", want, stdout)
		}
	}

	stdout = c.must("audit", "list", "--json")
	printableOutput(t, "audit list --json", stdout, false)
	var list adminclient.AuditList
	if err := json.Unmarshal([]byte(stdout), &list); err != nil || len(list.Entries) != 4 {
		t.Fatalf("audit list --json: %d entries, %v", len(list.Entries), err)
	}
	// The JSON carries the stored text: the raw row as it is, the others
	// escaped when they were recorded.
	if got := list.Entries[0].KeyName; got != "\x1b[2J\u009b31m" {
		t.Errorf("raw row's key name %q", got)
	}
	for i, want := range []string{termsafe.Escape(forgedRow), `\x1b]0;pwned\x07`, `\x1b]0;pwned\x07`} {
		if got := list.Entries[i+1].KeyName; got != want {
			t.Errorf("entry %d: key name %q, want %q", i+2, got, want)
		}
	}

	stdout, _, err = c.run("audit", "export")
	if err != nil {
		t.Fatal(err)
	}
	printableOutput(t, "audit export", stdout, false)
	sc := bufio.NewScanner(strings.NewReader(stdout))
	n := 0
	for sc.Scan() {
		var e adminclient.AuditEntry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil || e.KeyName != list.Entries[n].KeyName {
			t.Fatalf("export line %d: %+v, %v", n+1, e, err)
		}
		n++
	}
	if n != 4 {
		t.Fatalf("export: %d lines", n)
	}
}

// TestKeyOutputEscaped: a release policy printed by `key show` keeps its
// lines and tabs, and any control sequence in it is escaped.
func TestKeyOutputEscaped(t *testing.T) {
	c := cli{t: t, state: serve(t)}
	dir := t.TempDir()
	policy := filepath.Join(dir, "p.rego")
	src := "package p\n\n# \x1b]0;pwned\x07 \u009b2J\nresult := {\"allow\": false, \"reasons\": [\"no\"]}\n"
	if err := os.WriteFile(policy, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	c.must("key", "create", "k", "--release-policy", policy)
	// Errors print escaped too, whatever text they quote.
	_, _, err := c.run("key", "create", "k2", "--release-policy", filepath.Join(dir, "\x1b]0;pwned\x07"))
	if err == nil || !strings.Contains(err.Error(), `\x1b]0;pwned\x07: no such file`) {
		t.Fatalf("missing policy file: %v", err)
	}
	printableOutput(t, "the error", err.Error(), false)
	stdout := c.must("key", "show", "k")
	printableOutput(t, "key show", stdout, true)
	if !strings.Contains(stdout, "package p\n\n# \\x1b]0;pwned\\x07 \\u009b2J\nresult := ") {
		t.Fatalf("key show:\n%s", stdout)
	}
	stdout = c.must("key", "show", "k", "--json")
	printableOutput(t, "key show --json", stdout, false)
	var k adminclient.Key
	if err := json.Unmarshal([]byte(stdout), &k); err != nil || k.ReleasePolicy != src {
		t.Fatalf("key show --json: %q, %v", k.ReleasePolicy, err)
	}
}
