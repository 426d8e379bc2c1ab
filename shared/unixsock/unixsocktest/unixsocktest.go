// Package unixsocktest checks, for tests, that a unix socket never sits at
// its path with a mode other than 0600.
package unixsocktest

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// event is one inotify event on the watched directory.
type event struct {
	mask uint32
	name string
}

// ListenPrivate makes the directory of path enterable by others (0755), runs
// listen while watching that directory with inotify, and fails t unless the
// socket arrived at path by a rename, was not created or changed (chmod)
// there, is mode 0600, and no other file was created beside it. The kernel
// queues inotify events synchronously, so the check is exact: a socket
// created at its path and chmod'ed after is caught every time. It returns
// the listener, closed when the test ends.
func ListenPrivate(t *testing.T, path string, listen func() (net.Listener, error)) net.Listener {
	t.Helper()
	dir, name := filepath.Split(path)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	events := watch(t, dir)
	ln, err := listen()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	arrived := false
	for _, e := range events() {
		switch {
		case e.name == name && e.mask&syscall.IN_MOVED_TO != 0:
			arrived = true
		case e.name == name:
			t.Errorf("socket event %#x at %s: created or changed there, not moved in ready", e.mask, path)
		case e.mask&syscall.IN_CREATE != 0 && e.mask&syscall.IN_ISDIR == 0:
			t.Errorf("%q created beside the socket", e.name)
		}
	}
	if !arrived {
		t.Errorf("the socket did not arrive at %s by a rename", path)
	}
	fi, err := os.Lstat(path)
	if err != nil || fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket %s: %v, %v", path, fi, err)
	}
	return ln
}

// watch starts recording what happens to the entries of dir; the returned
// func returns the events so far.
func watch(t *testing.T, dir string) func() []event {
	t.Helper()
	fd, err := syscall.InotifyInit1(syscall.IN_NONBLOCK | syscall.IN_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if _, err := syscall.InotifyAddWatch(fd, dir, syscall.IN_CREATE|syscall.IN_MOVED_TO|syscall.IN_ATTRIB); err != nil {
		t.Fatal(err)
	}
	return func() []event {
		var evs []event
		buf := make([]byte, 64<<10)
		n, err := syscall.Read(fd, buf)
		if errors.Is(err, syscall.EAGAIN) {
			return nil
		}
		if err != nil {
			t.Fatal(err)
		}
		for b := buf[:n]; len(b) >= syscall.SizeofInotifyEvent; {
			mask := binary.NativeEndian.Uint32(b[4:])
			l := int(binary.NativeEndian.Uint32(b[12:]))
			name := string(bytes.TrimRight(b[syscall.SizeofInotifyEvent:syscall.SizeofInotifyEvent+l], "\x00"))
			evs = append(evs, event{mask: mask, name: name})
			b = b[syscall.SizeofInotifyEvent+l:]
		}
		return evs
	}
}
