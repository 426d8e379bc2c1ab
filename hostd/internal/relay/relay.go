// Package relay copies one guest connection to the verifier: QEMU's user
// networking runs `confidant-hostd relay --to HOST:PORT` once per guest TCP
// connection to 10.0.2.100:PORT (slirp's `guestfwd=...-cmd:`), with that
// connection on the relay's stdin and stdout, and the relay opens a fresh
// TCP connection to the verifier for it.
//
// The relay writes nothing of its own: slirp gives it the guest connection
// as stderr too, so every byte it printed would reach the guest. It never
// looks at the payload (TLS between the agent and the verifier).
package relay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// Defaults for Options' zero values.
const (
	DefaultDialTimeout = 5 * time.Second
	DefaultLinger      = 30 * time.Second
)

// ErrAddress means the --to address is not host:port.
var ErrAddress = errors.New("invalid relay address")

// Options tune Run. Zero values are documented per field.
type Options struct {
	// DialTimeout bounds the connection to the verifier; 0:
	// DefaultDialTimeout.
	DialTimeout time.Duration
	// Linger bounds how long the other direction may go on after one
	// side has closed (half-close); 0: DefaultLinger.
	Linger time.Duration
}

// Guest is the guest side of a relay: what it reads comes from the guest,
// what it writes goes to the guest. CloseWrite ends the direction towards
// the guest (a FIN), Close ends both.
type Guest interface {
	io.ReadWriter
	CloseWrite() error
	Close() error
}

// Stdio returns the guest side on the process's stdin and stdout. slirp
// hands over a socket; pipes (a terminal, a test) work too, CloseWrite
// then closing stdout. The descriptors are duplicated, so a write to a
// closed guest connection is an error, not a SIGPIPE that kills the relay.
func Stdio() (Guest, error) {
	in, err := fileConn(os.Stdin)
	if err != nil {
		return nil, err
	}
	out, err := fileConn(os.Stdout)
	if err != nil {
		in.Close()
		return nil, err
	}
	return &stdio{in: in, out: out}, nil
}

// fileConn returns f as a net.Conn when it is a socket, else a
// non-blocking duplicate of f (so that Close ends a pending Read).
func fileConn(f *os.File) (io.ReadWriteCloser, error) {
	if c, err := net.FileConn(f); err == nil {
		return c, nil
	}
	fd, err := unix.Dup(int(f.Fd()))
	if err != nil {
		return nil, fmt.Errorf("duplicating %s: %w", f.Name(), err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("duplicating %s: %w", f.Name(), err)
	}
	return os.NewFile(uintptr(fd), f.Name()), nil
}

type stdio struct {
	in, out io.ReadWriteCloser
}

func (s *stdio) Read(p []byte) (int, error)  { return s.in.Read(p) }
func (s *stdio) Write(p []byte) (int, error) { return s.out.Write(p) }

func (s *stdio) CloseWrite() error {
	if cw, ok := s.out.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return s.out.Close()
}

func (s *stdio) Close() error { return errors.Join(s.in.Close(), s.out.Close()) }

// CheckAddress checks that addr is host:port with a port in 1..65535.
func CheckAddress(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%w: %q: %w", ErrAddress, addr, err)
	}
	if host == "" {
		return fmt.Errorf("%w: %q: no host", ErrAddress, addr)
	}
	if p, err := net.LookupPort("tcp", port); err != nil || p < 1 || p > 65535 || port != fmt.Sprint(p) {
		return fmt.Errorf("%w: %q: port %q", ErrAddress, addr, port)
	}
	return nil
}

// Run dials addr and copies between g and that connection in both
// directions until both have ended: an end of input from one side is passed
// on as a half-close to the other, which then has opts.Linger to finish. An
// error in either direction, or ctx ending, closes both at once. Run closes
// g before it returns.
func Run(ctx context.Context, g Guest, addr string, opts Options) error {
	defer g.Close()
	if err := CheckAddress(addr); err != nil {
		return err
	}
	if opts.DialTimeout == 0 {
		opts.DialTimeout = DefaultDialTimeout
	}
	if opts.Linger == 0 {
		opts.Linger = DefaultLinger
	}
	d := net.Dialer{Timeout: opts.DialTimeout}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("dialing the verifier: %w", err)
	}
	conn := c.(*net.TCPConn)
	defer conn.Close()

	type result struct {
		dir string
		err error
	}
	done := make(chan result, 2)
	go func() {
		_, err := io.Copy(conn, g)
		if err == nil {
			err = conn.CloseWrite()
		}
		done <- result{"guest to verifier", err}
	}()
	go func() {
		_, err := io.Copy(g, conn)
		if err == nil {
			err = g.CloseWrite()
		}
		done <- result{"verifier to guest", err}
	}()

	stop := func() {
		// Unblocks both copies.
		_ = conn.Close()
		_ = g.Close()
	}
	var first result
	select {
	case first = <-done:
	case <-ctx.Done():
		stop()
		<-done
		<-done
		return ctx.Err()
	}
	if first.err != nil {
		stop()
		<-done
		return fmt.Errorf("relaying %s: %w", first.dir, first.err)
	}
	linger := time.NewTimer(opts.Linger)
	defer linger.Stop()
	select {
	case second := <-done:
		if second.err != nil {
			return fmt.Errorf("relaying %s: %w", second.dir, second.err)
		}
		return nil
	case <-linger.C:
		stop()
		<-done
		return nil
	case <-ctx.Done():
		stop()
		<-done
		return ctx.Err()
	}
}
