package netcfg

import (
	"encoding/binary"
	"fmt"
	"syscall"

	"golang.org/x/sys/unix"
)

// conn is a NETLINK_ROUTE socket.
type conn struct {
	fd  int
	seq uint32
	buf []byte
}

func dial() (*conn, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("opening netlink socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("binding netlink socket: %w", err)
	}
	// A reply never takes long; do not hang PID 1 if it does not come.
	tv := unix.Timeval{Sec: 5}
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("setting netlink timeout: %w", err)
	}
	return &conn{fd: fd, buf: make([]byte, 1<<16)}, nil
}

func (c *conn) close() { unix.Close(c.fd) }

// request sends one message with NLM_F_REQUEST|NLM_F_ACK and waits for its
// acknowledgement.
func (c *conn) request(typ uint16, flags uint16, body []byte) error {
	c.seq++
	msg := make([]byte, unix.SizeofNlMsghdr, unix.SizeofNlMsghdr+len(body))
	binary.NativeEndian.PutUint32(msg[0:], uint32(unix.SizeofNlMsghdr+len(body)))
	binary.NativeEndian.PutUint16(msg[4:], typ)
	binary.NativeEndian.PutUint16(msg[6:], flags|unix.NLM_F_REQUEST|unix.NLM_F_ACK)
	binary.NativeEndian.PutUint32(msg[8:], c.seq)
	msg = append(msg, body...)
	if err := unix.Sendto(c.fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("sending netlink request: %w", err)
	}
	for {
		n, _, err := unix.Recvfrom(c.fd, c.buf, 0)
		if err != nil {
			return fmt.Errorf("reading netlink reply: %w", err)
		}
		done, err := parseAck(c.buf[:n], c.seq)
		if done {
			return err
		}
		if err != nil {
			return err
		}
	}
}

// parseAck looks through a buffer of netlink messages for the NLMSG_ERROR
// message answering seq. It returns done once it found it, with the kernel's
// error (nil for an acknowledgement). Messages for other sequence numbers
// are skipped.
func parseAck(b []byte, seq uint32) (bool, error) {
	for len(b) > 0 {
		if len(b) < unix.SizeofNlMsghdr {
			return false, fmt.Errorf("%w: short header", ErrNetlink)
		}
		l := binary.NativeEndian.Uint32(b[0:])
		typ := binary.NativeEndian.Uint16(b[4:])
		mseq := binary.NativeEndian.Uint32(b[8:])
		if l < unix.SizeofNlMsghdr || uint64(l) > uint64(len(b)) {
			return false, fmt.Errorf("%w: length %d", ErrNetlink, l)
		}
		body := b[unix.SizeofNlMsghdr:l]
		if typ == unix.NLMSG_ERROR && mseq == seq {
			if len(body) < 4 {
				return true, fmt.Errorf("%w: short error message", ErrNetlink)
			}
			switch code := int32(binary.NativeEndian.Uint32(body)); {
			case code == 0:
			case code < 0 && code > -4096:
				return true, syscall.Errno(-code)
			default:
				return true, fmt.Errorf("%w: error code %d", ErrNetlink, code)
			}
			return true, nil
		}
		// Messages are padded to 4 bytes.
		next := (uint64(l) + 3) &^ 3
		if next > uint64(len(b)) {
			break
		}
		b = b[next:]
	}
	return false, nil
}
