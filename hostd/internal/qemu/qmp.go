package qemu

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// ErrQMPClosed means the QMP connection ended (QEMU exited or closed it).
var ErrQMPClosed = errors.New("QMP connection closed")

// maxQMPLine bounds one QMP message from QEMU.
const maxQMPLine = 4 << 20

// Event is an asynchronous QMP event (docs/interop/qmp-spec.rst).
type Event struct {
	Event     string          `json:"event"`
	Data      json.RawMessage `json:"data,omitempty"`
	Timestamp struct {
		Seconds      int64 `json:"seconds"`
		Microseconds int64 `json:"microseconds"`
	} `json:"timestamp"`
}

// ShutdownData is the data of a SHUTDOWN event (qapi/run-state.json).
type ShutdownData struct {
	Guest  bool   `json:"guest"`
	Reason string `json:"reason"`
}

// QMP is a client for QEMU's machine protocol over a unix socket. It is
// safe for concurrent use; commands are serialised.
type QMP struct {
	conn net.Conn

	cmdMu sync.Mutex // one command at a time
	mu    sync.Mutex
	reply chan qmpReply
	id    uint64

	events chan Event
	done   chan struct{}
	err    error // set before done is closed
}

type qmpReply struct {
	Return json.RawMessage `json:"return"`
	Error  *struct {
		Class string `json:"class"`
		Desc  string `json:"desc"`
	} `json:"error"`
	ID uint64 `json:"id"`
}

// DialQMP connects to a QMP socket, reads the greeting and negotiates
// capabilities. Events arrive on Events (buffered; when full, older events
// are dropped).
func DialQMP(ctx context.Context, path string) (*QMP, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, fmt.Errorf("connecting to QMP: %w", err)
	}
	q := &QMP{conn: conn, events: make(chan Event, 64), done: make(chan struct{})}
	r := bufio.NewReaderSize(conn, 64<<10)
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	} else {
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	}
	greeting, err := readQMPLine(r)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("reading QMP greeting: %w", err)
	}
	var g struct {
		QMP *json.RawMessage `json:"QMP"`
	}
	if err := json.Unmarshal(greeting, &g); err != nil || g.QMP == nil {
		conn.Close()
		return nil, fmt.Errorf("reading QMP greeting: unexpected message %.80q", greeting)
	}
	_ = conn.SetDeadline(time.Time{})
	go q.readLoop(r)
	if _, err := q.Execute(ctx, "qmp_capabilities", nil); err != nil {
		q.Close()
		return nil, fmt.Errorf("negotiating QMP capabilities: %w", err)
	}
	return q, nil
}

func readQMPLine(r *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		frag, err := r.ReadSlice('\n')
		line = append(line, frag...)
		if len(line) > maxQMPLine {
			return nil, fmt.Errorf("QMP message larger than %d bytes", maxQMPLine)
		}
		if err == nil {
			return line, nil
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return nil, err
		}
	}
}

func (q *QMP) readLoop(r *bufio.Reader) {
	var err error
	defer func() {
		q.mu.Lock()
		q.err = err
		q.mu.Unlock()
		close(q.done)
		close(q.events)
	}()
	for {
		var line []byte
		line, err = readQMPLine(r)
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
				err = ErrQMPClosed
			}
			return
		}
		var probe struct {
			Event  string          `json:"event"`
			Return json.RawMessage `json:"return"`
			Error  json.RawMessage `json:"error"`
		}
		if json.Unmarshal(line, &probe) != nil {
			continue // ignore what we cannot parse
		}
		if probe.Event != "" {
			var ev Event
			if json.Unmarshal(line, &ev) == nil {
				select {
				case q.events <- ev:
				default: // drop when nobody reads
				}
			}
			continue
		}
		var rep qmpReply
		if json.Unmarshal(line, &rep) != nil {
			continue
		}
		q.mu.Lock()
		ch := q.reply
		q.mu.Unlock()
		if ch != nil {
			select {
			case ch <- rep:
			default:
			}
		}
	}
}

// Execute runs one QMP command and returns its "return" value.
func (q *QMP) Execute(ctx context.Context, command string, args any) (json.RawMessage, error) {
	q.cmdMu.Lock()
	defer q.cmdMu.Unlock()
	ch := make(chan qmpReply, 1)
	q.mu.Lock()
	q.id++
	id := q.id
	q.reply = ch
	q.mu.Unlock()
	defer func() {
		q.mu.Lock()
		q.reply = nil
		q.mu.Unlock()
	}()
	msg := map[string]any{"execute": command, "id": id}
	if args != nil {
		msg["arguments"] = args
	}
	b, err := json.Marshal(msg)
	if err != nil {
		return nil, fmt.Errorf("encoding QMP command %s: %w", command, err)
	}
	if _, err := q.conn.Write(append(b, '\n')); err != nil {
		return nil, fmt.Errorf("sending QMP command %s: %w", command, err)
	}
	for {
		select {
		case rep := <-ch:
			if rep.ID != id {
				continue
			}
			if rep.Error != nil {
				return nil, fmt.Errorf("QMP command %s: %s: %s", command, rep.Error.Class, rep.Error.Desc)
			}
			return rep.Return, nil
		case <-q.done:
			return nil, fmt.Errorf("QMP command %s: %w", command, q.Err())
		case <-ctx.Done():
			return nil, fmt.Errorf("QMP command %s: %w", command, ctx.Err())
		}
	}
}

// Events returns the event channel; it is closed when the connection ends.
func (q *QMP) Events() <-chan Event { return q.events }

// Done is closed when the connection ends.
func (q *QMP) Done() <-chan struct{} { return q.done }

// Err returns why the connection ended (nil while it is open).
func (q *QMP) Err() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.err
}

// Close closes the connection.
func (q *QMP) Close() error { return q.conn.Close() }

// Status returns the run state from query-status ("running", "paused",
// "shutdown", ...).
func (q *QMP) Status(ctx context.Context) (string, error) {
	raw, err := q.Execute(ctx, "query-status", nil)
	if err != nil {
		return "", err
	}
	var st struct {
		Status string `json:"status"`
	}
	if err := json.Unmarshal(raw, &st); err != nil {
		return "", fmt.Errorf("decoding query-status: %w", err)
	}
	return st.Status, nil
}
