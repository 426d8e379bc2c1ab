package testboot

import (
	"bytes"
	"os/exec"
	"strings"
	"testing"
)

// TestWriteNewcReadByCpio checks the archive with GNU cpio.
func TestWriteNewcReadByCpio(t *testing.T) {
	if _, err := exec.LookPath("cpio"); err != nil {
		t.Fatal("cpio not installed")
	}
	var buf bytes.Buffer
	err := WriteNewc(&buf, []File{
		{Name: "dev", Mode: 0o040755},
		{Name: "dev/console", Mode: 0o020600, RMaj: 5, RMinor: 1},
		{Name: "init", Mode: 0o100755, Data: []byte("#!/bin/sh\n")},
		{Name: "odd", Mode: 0o100644, Data: []byte("abc")},
	})
	if err != nil {
		t.Fatal(err)
	}
	if buf.Len()%4 != 0 {
		t.Errorf("archive length %d not 4-aligned", buf.Len())
	}
	cmd := exec.CommandContext(t.Context(), "cpio", "-itv", "--quiet")
	cmd.Stdin = &buf
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("cpio -t: %v: %s", err, out)
	}
	for _, want := range []string{"drwxr-xr-x", "crw-------", "5,   1", "dev/console", "-rwxr-xr-x", "init", "odd"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("cpio listing lacks %q:\n%s", want, out)
		}
	}
}
