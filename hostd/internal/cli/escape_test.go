package cli

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/confidant-cvm/confidant/hostd/internal/guest"
	"github.com/confidant-cvm/confidant/hostd/internal/spec"
)

// printable fails when out holds anything but printable ASCII and
// newlines.
func printable(t *testing.T, what, out string) {
	t.Helper()
	for i := 0; i < len(out); i++ {
		if c := out[i]; (c < 0x20 || c > 0x7e) && c != '\n' {
			t.Fatalf("%s holds the raw byte %#x at %d:\n%q", what, c, i, out)
		}
	}
}

// hostileGuest is a guest whose status and spec carry text that tries to
// forge a row or drive the operator's terminal (a guest controls parts of
// its status reason).
func hostileGuest() guest.Guest {
	return guest.Guest{
		Name: "demo",
		Spec: spec.Spec{Name: "demo", TEE: spec.TEE("sim-sev-snp"), VCPUs: 1, Verifier: "http://10.0.2.2:8443\x1b[2J",
			Image: spec.Image{Kernel: "/img/vmlinuz\u202e", Initrd: "/img/initrd", Cmdline: "console=ttyS0 \x1b]0;pwned\x07"}},
		Status: guest.Status{State: guest.State("failed"), Reason: "start: agent: \x1b]0;pwned\x07\nother  running  -  fine",
			Measurement: "\u009b31m" + strings.Repeat("a", 40)},
	}
}

// TestGuestOutputEscaped: vm list, show and --json print a guest's text
// escaped: no control byte, no forged row, and the JSON decodes to the
// same guest.
func TestGuestOutputEscaped(t *testing.T) {
	g := hostileGuest()
	var list bytes.Buffer
	if err := printList(&list, []guest.Guest{g}); err != nil {
		t.Fatal(err)
	}
	printable(t, "vm list", list.String())
	if n := strings.Count(list.String(), "\n"); n != 2 {
		t.Fatalf("vm list has %d lines for one guest:\n%s", n, list.String())
	}
	if !strings.Contains(list.String(), `start: agent: \x1b]0;pwned\x07\nother  running`) {
		t.Fatalf("vm list:\n%s", list.String())
	}

	var show bytes.Buffer
	if err := printGuest(&show, g); err != nil {
		t.Fatal(err)
	}
	printable(t, "vm show", show.String())
	for _, want := range []string{`reason:       start: agent: \x1b]0;pwned\x07\nother`, `cmdline:      console=ttyS0 \x1b]0;pwned\x07`,
		`kernel:       /img/vmlinuz\u202e`, `verifier:     http://10.0.2.2:8443\x1b[2J`} {
		if !strings.Contains(show.String(), want) {
			t.Errorf("vm show lacks %s:\n%s", want, show.String())
		}
	}

	var js bytes.Buffer
	if err := printJSON(&js, g); err != nil {
		t.Fatal(err)
	}
	printable(t, "vm show --json", js.String())
	var back guest.Guest
	if err := json.Unmarshal(js.Bytes(), &back); err != nil || back.Status.Reason != g.Status.Reason ||
		back.Spec.Image.Kernel != g.Spec.Image.Kernel || back.Status.Measurement != g.Status.Measurement {
		t.Fatalf("vm show --json does not decode to the guest: %+v, %v", back, err)
	}
}

// TestErrorEscaped: an error (here one that quotes the socket path) is
// printed escaped.
func TestErrorEscaped(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "\x1b]0;pwned\x07")
	_, errOut, code := run(t, t.Context(), "--socket", sock, "vm", "list")
	if code == 0 {
		t.Fatal("vm list without a daemon succeeded")
	}
	printable(t, "the error", errOut)
	if !strings.Contains(errOut, `\x1b]0;pwned\x07`) {
		t.Fatalf("error: %q", errOut)
	}
}
