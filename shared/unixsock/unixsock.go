// Package unixsock listens on unix sockets that only their owner can
// connect to, from the moment the socket exists at its path.
//
// Listening and then chmod'ing leaves a window in which the socket sits at
// its path with the umask's mode (often 0755 or 0777 for a socket), and a
// client that connects then keeps its connection. Listen closes it without
// touching the process umask (which every goroutine shares): the socket is
// bound inside a fresh directory of mode 0700, set to 0600 there, and only
// then renamed to its path, which is atomic and keeps the mode.
package unixsock

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// Sentinel errors.
var (
	// ErrInUse means another process is serving the socket.
	ErrInUse = errors.New("socket in use by another process")
	// ErrNotSocket means the path exists and is not a socket.
	ErrNotSocket = errors.New("exists and is not a socket")
)

// maxPath is the longest socket path the kernel takes (sun_path is 108
// bytes with its NUL).
const maxPath = 107

// Listen listens on a unix socket at path with mode 0600. A stale socket
// there (one that nobody answers on) is replaced; a socket in use is
// ErrInUse and any other kind of file ErrNotSocket. The parent directory
// must exist. Closing the listener removes the socket, unless another
// socket replaced it meanwhile.
func Listen(path string) (net.Listener, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&fs.ModeSocket == 0 {
			return nil, fmt.Errorf("listening on %s: %w", path, ErrNotSocket)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("listening on %s: %w", path, ErrInUse)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("listening on %s: %w", path, err)
	}
	dir, err := os.MkdirTemp(filepath.Dir(path), ".sock-")
	if err != nil {
		return nil, fmt.Errorf("listening on %s: creating a private directory: %w", path, err)
	}
	defer os.Remove(dir)
	// MkdirTemp makes it 0700; make sure, whatever the umask did.
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, fmt.Errorf("listening on %s: %w", path, err)
	}
	ln, err := bindPrivate(dir)
	if err != nil {
		return nil, fmt.Errorf("listening on %s: %w", path, err)
	}
	// Unlinked by Close below, under its final name.
	ln.SetUnlinkOnClose(false)
	tmp := filepath.Join(dir, "s")
	if err := os.Chmod(tmp, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("listening on %s: restricting the socket: %w", path, err)
	}
	fi, err := os.Lstat(tmp)
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("listening on %s: %w", path, err)
	}
	// Atomic, and replaces a stale socket in one step.
	if err := os.Rename(tmp, path); err != nil {
		ln.Close()
		os.Remove(tmp)
		return nil, fmt.Errorf("listening on %s: moving the socket into place: %w", path, err)
	}
	return &listener{UnixListener: ln, addr: &net.UnixAddr{Name: path, Net: "unix"}, file: fi}, nil
}

// bindPrivate binds a socket named "s" in dir. A path too long for the
// kernel is reached through /proc/self/fd, which names the directory in a
// few bytes.
func bindPrivate(dir string) (*net.UnixListener, error) {
	name := filepath.Join(dir, "s")
	if len(name) <= maxPath {
		return net.ListenUnix("unix", &net.UnixAddr{Name: name, Net: "unix"})
	}
	d, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	short := "/proc/self/fd/" + strconv.Itoa(int(d.Fd())) + "/s"
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: short, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("binding through %s (the directory path is %d bytes): %w", short, len(dir), err)
	}
	return ln, nil
}

// listener is a unix listener that reports its final path and removes it
// on Close.
type listener struct {
	*net.UnixListener
	addr *net.UnixAddr
	// file identifies the socket file, so that Close does not remove a
	// successor's.
	file os.FileInfo
}

func (l *listener) Addr() net.Addr { return l.addr }

func (l *listener) Close() error {
	err := l.UnixListener.Close()
	if fi, serr := os.Lstat(l.addr.Name); serr == nil && os.SameFile(fi, l.file) {
		if rerr := os.Remove(l.addr.Name); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) && err == nil {
			err = rerr
		}
	}
	return err
}
