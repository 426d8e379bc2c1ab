package encrypt

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/confidant-cvm/confidant/shared/testenv"
)

// TestEncryptDiskFull: the disk fills while the OS disk is written. The
// error says so, the disk image that was there before is untouched, and no
// partial file is left beside it.
func TestEncryptDiskFull(t *testing.T) {
	input := mkfs(t, 24<<20, "4096")
	// 16 MiB of header and keyslots plus 24 MiB of data do not fit in 28.
	dir := testenv.Tmpfs(t, "28m")
	output := filepath.Join(dir, "os-disk.img")
	previous := bytes.Repeat([]byte("the disk image of the last build "), 1000)
	if err := os.WriteFile(output, previous, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Encrypt(context.Background(), Spec{Input: input, Output: output}, slog.New(slog.DiscardHandler))
	if err == nil {
		t.Fatal("encrypting onto a full disk succeeded")
	}
	if !strings.Contains(err.Error(), "no space left on device") || !strings.Contains(err.Error(), dir) {
		t.Fatalf("error %q does not say that the disk of %s is full", err, dir)
	}
	got, rerr := os.ReadFile(output)
	if rerr != nil || !bytes.Equal(got, previous) {
		t.Fatalf("the previous output changed (%d bytes, %v)", len(got), rerr)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Fatalf("files left in the output directory: %q", names)
	}
}
