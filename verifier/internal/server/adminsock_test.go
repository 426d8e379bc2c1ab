package server

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/confidant-cvm/confidant/shared/unixsock/unixsocktest"
)

// TestAdminSocketPrivateFromTheStart: the admin socket is mode 0600 from
// the moment it exists at its path, even in a directory others can enter
// (a custom --admin-listen path): it is never created there and chmod'ed
// after.
func TestAdminSocketPrivateFromTheStart(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "run", "admin.sock")
	if err := os.Mkdir(filepath.Dir(sock), 0o755); err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, fixtureOpts{config: func(c *Config) { c.AdminListen = "unix:" + sock }})
	ln := unixsocktest.ListenPrivate(t, sock, f.srv.AdminListener)
	if ln.Addr().String() != sock {
		t.Errorf("admin listener address %q, want %q", ln.Addr(), sock)
	}
}
