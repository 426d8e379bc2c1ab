package unixsock

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/confidant-cvm/confidant/shared/unixsock/unixsocktest"
)

// TestListenPrivateFromTheStart: in a directory that others can enter,
// the socket never appears at its path with any mode but 0600: it arrives
// there by a rename, already restricted, and its mode is not changed
// after; the private directory it was made in is gone.
func TestListenPrivateFromTheStart(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "api.sock")
	ln := unixsocktest.ListenPrivate(t, path, func() (net.Listener, error) { return Listen(path) })
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("directory holds %d entries, want only the socket", len(entries))
	}
	if st, _ := os.Stat(dir); st.Mode().Perm() != 0o755 {
		t.Errorf("parent directory mode changed to %v", st.Mode().Perm())
	}
	if ln.Addr().String() != path {
		t.Errorf("Addr %q, want %q", ln.Addr(), path)
	}
	dialAndClose(t, path)
}

func dialAndClose(t *testing.T, path string) {
	t.Helper()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatalf("dialing %s: %v", path, err)
	}
	c.Close()
}

func TestListenExistingFiles(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "s.sock")
	ln, err := Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Listen(sock); !errors.Is(err, ErrInUse) {
		t.Errorf("socket in use: got %v, want ErrInUse", err)
	}
	ln.Close()
	if _, err := os.Lstat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Close left the socket: %v", err)
	}

	// A stale socket (a crashed server) is replaced.
	stale, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	stale.SetUnlinkOnClose(false)
	stale.Close()
	ln, err = Listen(sock)
	if err != nil {
		t.Fatalf("over a stale socket: %v", err)
	}
	dialAndClose(t, sock)

	// Closing does not remove a successor's socket.
	if err := os.Remove(sock); err != nil {
		t.Fatal(err)
	}
	next, err := Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer next.Close()
	ln.Close()
	dialAndClose(t, sock)

	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Listen(file); !errors.Is(err, ErrNotSocket) {
		t.Errorf("regular file: got %v, want ErrNotSocket", err)
	}
}

// TestListenLongPath: a socket path that fits the kernel's limit, in a
// directory whose private subdirectory would not, still works.
func TestListenLongPath(t *testing.T) {
	base := t.TempDir()
	pad := 100 - len(base) - 1
	if pad < 1 {
		t.Fatalf("temporary directory %q is too long for this test", base)
	}
	dir := filepath.Join(base, strings.Repeat("d", pad))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "a")
	if len(path) > maxPath || len(filepath.Join(dir, ".sock-0000000000", "s")) <= maxPath {
		t.Fatalf("setup: path %d bytes", len(path))
	}
	ln, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if fi, err := os.Lstat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket: %v, %v", fi, err)
	}
	dialAndClose(t, path)
}
