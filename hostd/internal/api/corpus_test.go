package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"unicode"

	"github.com/confidant-cvm/confidant/hostd/internal/guest"
	"github.com/confidant-cvm/confidant/shared/tee/snp/sim"
	"github.com/confidant-cvm/confidant/shared/termsafe"
)

// The hostd part of the hostile corpus: specs and requests an attacker (or
// a confused operator or script) sends to hostd's control API, each through
// the real handler on a real unix socket, over a real guest.Manager with
// its own state directory, the simulated signer's chain in it and the
// daemon's log handler. Every case names the answer it must get (status,
// error code, a reason), and the test checks for each that nothing was
// created or removed under the state directory, that List() is unchanged,
// and that neither the answer nor hostd's log holds a raw control
// character. A case that is accepted fails the test.

// hostdCase is one request and what it must get.
type hostdCase struct {
	group  string
	name   string
	send   func(t *testing.T, c *hostdCorpus) hostdResponse
	status int
	code   string
	// reason is a substring ("|"-separated alternatives) the error
	// message must contain.
	reason string
	// several: the spec has several problems, reported one per line.
	several bool
}

type hostdResponse struct {
	status int
	body   []byte
}

func (r hostdResponse) String() string { return fmt.Sprintf("HTTP %d %s", r.status, r.body) }

// hostdCorpus is what the cases share: the API, its state directory, good
// image files outside it, and hostile files and links prepared once.
type hostdCorpus struct {
	client   *Client
	m        *guest.Manager
	stateDir string
	out      string // a directory outside the state directory
	kernel   string
	initrd   string
	log      *syncBuffer
	base     guest.Guest // a guest created before the cases run
	baseHD   string      // the explicit snp.host_data of guest "base-explicit"
}

func newHostdCorpus(t *testing.T) *hostdCorpus {
	t.Helper()
	dir := shortDir(t)
	c := &hostdCorpus{stateDir: filepath.Join(dir, "state"), out: filepath.Join(dir, "out"), log: &syncBuffer{}}
	// The daemon's log handler (cli.Serve), grouped the same way.
	log := slog.New(slog.NewTextHandler(c.log, &slog.HandlerOptions{Level: slog.LevelDebug, ReplaceAttr: termsafe.ReplaceAttr}))
	signer, err := sim.LoadOrCreate(filepath.Join(c.stateDir, "sim-sp"))
	if err != nil {
		t.Fatal(err)
	}
	c.m, err = guest.New(t.Context(), guest.Options{StateDir: c.stateDir, QEMU: "/bin/false", Relay: "/bin/false",
		Signer: signer, Log: log.WithGroup("guests")})
	if err != nil {
		t.Fatal(err)
	}
	c.client = serveManager(t, dir, c.m, log)
	c.prepareFiles(t)
	return c
}

// prepareFiles makes the good image files, the hostile files and links,
// and the guests that exist before the cases run.
func (c *hostdCorpus) prepareFiles(t *testing.T) {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(c.out, "dir"), 0o755))
	c.kernel, c.initrd = filepath.Join(c.out, "vmlinuz"), filepath.Join(c.out, "initrd.img")
	for _, f := range []string{c.kernel, c.initrd, filepath.Join(c.out, "os.img")} {
		must(os.WriteFile(f, make([]byte, 4096), 0o644))
	}
	must(syscall.Mkfifo(filepath.Join(c.out, "fifo"), 0o600))
	// What hostd keeps: the simulated signer's keys (made above), a vTPM
	// key as swtpm would have it.
	must(os.WriteFile(filepath.Join(c.stateDir, "keys", "base.swtpm-key"), make([]byte, 32), 0o600))
	links := map[string]string{
		"ark-link":   filepath.Join(c.stateDir, "sim-sp", sim.ARKKeyFile),
		"state-link": c.stateDir,
		"dangling":   filepath.Join(c.stateDir, "guests", "not-yet", "kernel"),
		"loop-a":     filepath.Join(c.out, "loop-b"),
		"loop-b":     filepath.Join(c.out, "loop-a"),
		"chain":      filepath.Join(c.out, "ark-link"),
		"rel-link":   "../state/keys/base.swtpm-key",
	}
	for name, target := range links {
		must(os.Symlink(target, filepath.Join(c.out, name)))
	}
	manifest := func(name string, m map[string]string) {
		b, err := json.Marshal(m)
		must(err)
		must(os.WriteFile(filepath.Join(c.out, name), b, 0o644))
	}
	manifest("into-state.json", map[string]string{"kernel": "../state/sim-sp/" + sim.VCEKKeyFile, "initrd": "initrd.img"})
	manifest("fine.json", map[string]string{"kernel": "vmlinuz", "initrd": "initrd.img"})

	// Two guests exist: one with the identity hostd derived, one with an
	// explicit snp.host_data. Their creation through the same path shows
	// that the unedited spec is accepted.
	r := c.create(t, c.spec("base"))
	if r.status != http.StatusCreated {
		t.Fatalf("creating the base guest: %v", r)
	}
	c.baseHD = "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA="
	s := c.spec("base-explicit")
	s["snp"] = map[string]any{"host_data": c.baseHD}
	if r := c.create(t, s); r.status != http.StatusCreated {
		t.Fatalf("creating the guest with explicit host_data: %v", r)
	}
	// A guest whose files are swapped after create (swapCase); it has
	// been started before, so its boot directory exists.
	swapped := c.spec("swapped")
	swapped["image"].(map[string]any)["kernel"] = c.out + "/swap-vmlinuz"
	swapped["image"].(map[string]any)["initrd"] = c.out + "/swap-initrd"
	c.restoreSwapped(t)
	if r := c.create(t, swapped); r.status != http.StatusCreated {
		t.Fatalf("creating the guest whose files are swapped: %v", r)
	}
	must(os.Mkdir(filepath.Join(c.stateDir, "guests", "swapped", "boot"), 0o700))
	var err error
	c.base, err = c.m.Get("base")
	must(err)
}

// restoreSwapped puts good files back at the paths of guest "swapped".
func (c *hostdCorpus) restoreSwapped(t *testing.T) {
	t.Helper()
	for _, f := range []string{"swap-vmlinuz", "swap-initrd"} {
		p := filepath.Join(c.out, f)
		if err := os.RemoveAll(p); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, make([]byte, 4096), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// spec returns a spec that hostd accepts, as the JSON object the CLI sends.
func (c *hostdCorpus) spec(name string) map[string]any {
	return map[string]any{
		"name": name, "tee": "sim", "vcpus": 1, "memory": "256MiB", "verifier": "127.0.0.1:8443",
		"image":    map[string]any{"kernel": c.kernel, "initrd": c.initrd, "cmdline": "console=ttyS0"},
		"firmware": map[string]any{"kind": "seabios"},
	}
}

func (c *hostdCorpus) create(t *testing.T, s map[string]any) hostdResponse {
	t.Helper()
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	return c.raw(t, http.MethodPost, "/v1/guests", "application/json", bytes.NewReader(b))
}

// raw sends one request; contentType "" sends none.
func (c *hostdCorpus) raw(t *testing.T, method, path, contentType string, body io.Reader) hostdResponse {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, "http://hostd"+path, body)
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := c.client.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return hostdResponse{status: resp.StatusCode, body: b}
}

func TestHostdCorpus(t *testing.T) {
	c := newHostdCorpus(t)
	cases := hostdCases()
	if len(cases) < 25 {
		t.Fatalf("the hostd corpus has %d cases, want at least 25", len(cases))
	}
	seen := map[string]bool{}
	counts, failed := map[string]int{}, map[string]int{}
	for _, tc := range cases {
		id := tc.group + "/" + tc.name
		if seen[id] {
			t.Fatalf("duplicate case %s", id)
		}
		seen[id] = true
		counts[tc.group]++
		ok := t.Run(id, func(t *testing.T) {
			before, guests := stateTree(t, c.stateDir), guestNames(c.m)
			logStart := len(c.log.String())
			t.Cleanup(func() { c.removeNew(t, guests) }) // a wrongly accepted case must not spoil the next
			r := tc.send(t, c)
			checkHostdRefused(t, tc, r)
			if after := stateTree(t, c.stateDir); !slices.Equal(after, before) {
				t.Errorf("the state directory changed:\nbefore %q\nafter  %q", before, after)
			}
			if after := guestNames(c.m); !slices.Equal(after, guests) {
				t.Errorf("List() changed: %q, was %q", after, guests)
			}
			checkHostdLog(t, tc, c.log.String()[logStart:])
		})
		if !ok {
			failed[tc.group]++
		}
	}
	summary := hostdSummary(counts, failed)
	t.Log("\n" + summary)
	if p := os.Getenv("CONFIDANT_CORPUS_SUMMARY_HOSTD"); p != "" {
		if err := os.WriteFile(p, []byte(summary), 0o644); err != nil {
			t.Error(err)
		}
	}
}

// checkHostdRefused: the answer is the expected refusal, a JSON error body
// with the code and reason, and no raw control character in it.
func checkHostdRefused(t *testing.T, tc hostdCase, r hostdResponse) {
	t.Helper()
	if r.status < 400 {
		t.Fatalf("ACCEPTED: %v", r)
	}
	for _, b := range r.body {
		if (b < 0x20 && b != '\n') || b == 0x7f {
			t.Errorf("the answer holds a raw control byte %#x: %q", b, r.body)
			break
		}
	}
	var e ErrorBody
	if err := json.Unmarshal(r.body, &e); err != nil {
		t.Fatalf("error body is not JSON: %v", r)
	}
	if r.status != tc.status || e.Error.Code != tc.code {
		t.Fatalf("got %v, want %d %s", r, tc.status, tc.code)
	}
	if !hasAny(e.Error.Message, tc.reason) {
		t.Fatalf("message %q lacks %q", e.Error.Message, tc.reason)
	}
	// A newline separates the problems of one spec (errors.Join), so only
	// a case with several problems may have one.
	unsafe := func(r rune) bool {
		return (r != '\n' || !tc.several) && (unicode.IsControl(r) || unicode.Is(unicode.Cf, r))
	}
	if i := strings.IndexFunc(e.Error.Message, unsafe); i >= 0 {
		t.Errorf("the message holds a raw control or format character at %d: %q", i, e.Error.Message)
	}
}

// checkHostdLog: what hostd logged during the case is printable ASCII
// lines, and a refusal is logged with its code.
func checkHostdLog(t *testing.T, tc hostdCase, logged string) {
	t.Helper()
	for i := 0; i < len(logged); i++ {
		if b := logged[i]; b != '\n' && (b < 0x20 || b > 0x7e) {
			t.Errorf("hostd's log holds byte %#x raw: %q", b, logged)
			break
		}
	}
	if tc.status == http.StatusInternalServerError && !strings.Contains(logged, "API request failed") {
		t.Errorf("hostd's log does not record the failure: %q", logged)
	} else if tc.status != http.StatusInternalServerError && !strings.Contains(logged, "code="+tc.code) {
		t.Errorf("hostd's log does not record the refusal (code=%s): %q", tc.code, logged)
	}
}

func hasAny(s, alternatives string) bool {
	for _, a := range strings.Split(alternatives, "|") {
		if strings.Contains(s, a) {
			return true
		}
	}
	return false
}

// stateTree lists every path under the state directory with its kind.
func stateTree(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		out = append(out, strings.TrimPrefix(p, dir)+" "+d.Type().String())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// removeNew deletes the guests a wrongly accepted case created.
func (c *hostdCorpus) removeNew(t *testing.T, keep []string) {
	t.Helper()
	for _, name := range guestNames(c.m) {
		if !slices.Contains(keep, name) {
			if err := c.m.Delete(t.Context(), name); err != nil {
				t.Errorf("removing guest %q: %v", name, err)
			}
		}
	}
}

func guestNames(m *guest.Manager) []string {
	var out []string
	for _, g := range m.List() {
		out = append(out, g.Name)
	}
	return out
}

func hostdSummary(counts, failed map[string]int) string {
	groups := make([]string, 0, len(counts))
	for g := range counts {
		groups = append(groups, g)
	}
	slices.Sort(groups)
	var b bytes.Buffer
	total, fails := 0, 0
	fmt.Fprintf(&b, "hostile corpus (hostd, through the API handler):\n")
	for _, g := range groups {
		fmt.Fprintf(&b, "  %-22s %3d cases, %3d refused as expected\n", g, counts[g], counts[g]-failed[g])
		total += counts[g]
		fails += failed[g]
	}
	fmt.Fprintf(&b, "  %-22s %3d cases, %3d refused as expected, %d accepted or refused wrongly\n", "total", total, total-fails, fails)
	return b.String()
}
