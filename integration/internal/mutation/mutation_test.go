package mutation

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const (
	chkSource = `package chk

// Allowed refuses n above 10; a test covers it.
func Allowed(n int) bool {
	if n > 10 {
		return false
	}
	return true
}

// Positive refuses n below 0; no test covers it.
func Positive(n int) bool {
	if n < 0 {
		return false
	}
	return true
}
`
	chkTest = `package chk

import "testing"

func TestAllowed(t *testing.T) {
	if Allowed(11) {
		t.Fatal("11 allowed")
	}
}
`
)

// newModule writes a one-package module into a git repository and
// returns its directory.
func newModule(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{"go.mod": "module example.com/m\n\ngo 1.22\n", "chk/chk.go": chkSource, "chk/chk_test.go": chkTest}
	for name, text := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, args := range [][]string{{"init", "-q"}, {"add", "."}, {"-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-m", "m"}} {
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v: %s", args, err, out)
		}
	}
	return dir
}

// TestRunner runs the four outcomes on a real module: a check a test
// covers (caught), one none covers (not caught), a snippet that is not in
// the source (stale) and a replacement that does not compile.
func TestRunner(t *testing.T) {
	src := newModule(t)
	// A change to the working tree that is not committed: the copy of
	// HEAD must not see it, and the source must stay untouched.
	if err := os.WriteFile(filepath.Join(src, "chk", "extra.go"), []byte("package chk\n\nvar broken = \n"), 0o644); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "copy")
	ctx := context.Background()
	if err := Copy(ctx, src, dst, false); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dst, "chk", "extra.go")); !os.IsNotExist(err) {
		t.Fatalf("the copy of HEAD holds an uncommitted file (%v)", err)
	}
	ms := []Mutation{
		{Item: "covered", Edits: []Edit{off("chk", "n > 10")}, Pkg: "./chk", Run: "^TestAllowed$"},
		{Item: "uncovered", Edits: []Edit{off("chk", "n < 0")}, Pkg: "./chk", Run: "^TestAllowed$"},
		{Item: "stale", Edits: []Edit{off("chk", "n > 99")}, Pkg: "./chk", Run: "^TestAllowed$"},
		{Item: "broken", Edits: []Edit{{Dir: "chk", Old: "if n > 10 {", New: "if undefinedName {"}}, Pkg: "./chk", Run: "^TestAllowed$"},
	}
	want := []Outcome{Caught, Missed, Stale, BuildError}
	r := &Runner{Dir: dst, Timeout: 3 * time.Minute}
	if bad := r.Baseline(ctx, ms); len(bad) != 0 {
		t.Fatalf("baseline fails: %v", bad)
	}
	var results []Result
	for i, m := range ms {
		res := r.Run(ctx, m)
		if res.Outcome != want[i] {
			t.Errorf("%s: outcome %s (%s), want %s", m.Item, res.Outcome, res.Detail, want[i])
		}
		results = append(results, res)
		b, err := os.ReadFile(filepath.Join(dst, "chk", "chk.go"))
		if err != nil || string(b) != chkSource {
			t.Fatalf("%s: the copy was not restored (%v)", m.Item, err)
		}
	}
	if results[0].Detail != "TestAllowed" {
		t.Errorf("caught by %q, want TestAllowed", results[0].Detail)
	}
	var table bytes.Buffer
	if WriteTable(&table, results, time.Second) {
		t.Error("WriteTable reported all caught")
	}
	if !strings.Contains(table.String(), "4 mutations: 1 caught, 1 not caught (0 of them second lines no input reaches), 1 stale, 1 build errors") {
		t.Errorf("table summary:\n%s", table.String())
	}
	// A miss marked as a second line is reported with its reason and
	// does not fail the check.
	second := results[1]
	second.Mutation.SecondLine = "refused in front of it"
	table.Reset()
	if !WriteTable(&table, []Result{results[0], second}, time.Second) || !strings.Contains(table.String(), "no (second line) | refused in front of it") {
		t.Errorf("second line not accepted:\n%s", table.String())
	}
	if b, err := os.ReadFile(filepath.Join(src, "chk", "chk.go")); err != nil || string(b) != chkSource {
		t.Fatalf("the source tree was changed (%v)", err)
	}
}

// TestChecklistLocates checks every snippet of the checklist against this
// repository's source: a refactor that moves or rewrites a check makes the
// table stale, and this test says which entry.
func TestChecklistLocates(t *testing.T) {
	root, err := filepath.Abs("../../..")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range Checklist() {
		for _, e := range m.Edits {
			if _, err := locate(root, e); err != nil {
				t.Errorf("%s: %s: %v", m.Item, m.Name, err)
			}
		}
		if m.Pkg == "" || m.Run == "" || m.Item == "" || m.Name == "" {
			t.Errorf("incomplete entry %+v", m)
		}
	}
}
