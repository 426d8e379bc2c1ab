package simsp

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"
)

// Client asks the simulated secure processor for reports over one
// connection (the guest's virtio-serial port). It is safe for concurrent use;
// requests are serialised.
type Client struct {
	mu     sync.Mutex
	rw     io.ReadWriter
	r      *bufio.Reader
	broken error
}

// NewClient returns a Client that speaks the protocol over rw, typically the
// opened /dev/vportNpM whose name is PortName.
func NewClient(rw io.ReadWriter) *Client {
	return &Client{rw: rw, r: bufio.NewReaderSize(rw, 4096)}
}

type deadliner interface {
	SetDeadline(time.Time) error
}

// GetReport sends reportData and waits for the answer. It returns the raw
// SNP report and the certificate table (possibly empty). An error response
// from the host matches ErrRemote and leaves the Client usable; any other
// failure (I/O, ctx done, malformed or oversize response) makes every later
// call fail with ErrBroken, because a late answer could otherwise be taken
// for the next request's.
//
// ctx bounds the whole exchange. When rw has SetDeadline (net.Conn, a
// pollable *os.File) the pending read is interrupted; otherwise the reading
// goroutine stays blocked until rw returns.
func (c *Client) GetReport(ctx context.Context, reportData [ReportDataSize]byte) (report, certTable []byte, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.broken != nil {
		return nil, nil, fmt.Errorf("requesting report: %w (%v)", ErrBroken, c.broken)
	}
	if err := ctx.Err(); err != nil {
		return nil, nil, fmt.Errorf("requesting report: %w", err)
	}
	type result struct {
		report, certTable []byte
		err               error
	}
	done := make(chan result, 1)
	go func() {
		var r result
		r.report, r.certTable, r.err = c.exchange(reportData)
		done <- r
	}()
	select {
	case r := <-done:
		if r.err != nil && !errors.Is(r.err, ErrRemote) {
			c.broken = r.err
		}
		return r.report, r.certTable, r.err
	case <-ctx.Done():
		c.broken = ctx.Err()
		if d, ok := c.rw.(deadliner); ok {
			_ = d.SetDeadline(time.Unix(1, 0)) // unblock the goroutine
		}
		return nil, nil, fmt.Errorf("waiting for report: %w", ctx.Err())
	}
}

func (c *Client) exchange(reportData [ReportDataSize]byte) (report, certTable []byte, err error) {
	if _, err := c.rw.Write(EncodeRequest(reportData)); err != nil {
		return nil, nil, fmt.Errorf("sending report request: %w", err)
	}
	for {
		line, err := readLine(c.r, MaxResponseLine)
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, nil, fmt.Errorf("reading report response: %w", err)
		}
		if len(line) == 0 {
			continue
		}
		return ParseResponse(line)
	}
}
