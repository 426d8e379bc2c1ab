package capped

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReadFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	if b, err := ReadFile(write("four", "1234"), 4); err != nil || string(b) != "1234" {
		t.Errorf("at the limit: %q, %v", b, err)
	}
	if b, err := ReadFile(write("empty", ""), 4); err != nil || b == nil || len(b) != 0 {
		t.Errorf("empty file: %#v, %v (want a non-nil empty slice)", b, err)
	}
	five := write("five", "12345")
	if b, err := ReadFile(five, 4); err == nil || b != nil || err.Error() != five+" is larger than 4 bytes" {
		t.Errorf("over the limit: %q, %v", b, err)
	}
	if _, err := ReadFile(filepath.Join(dir, "absent"), 4); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	if b, err := Read(strings.NewReader("abc"), "r", 3); err != nil || string(b) != "abc" {
		t.Errorf("Read: %q, %v", b, err)
	}
}
