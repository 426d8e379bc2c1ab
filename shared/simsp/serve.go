package simsp

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"
)

// ReportSigner makes a signed SNP report for one guest. hostd implements
// it per guest, with the launch measurement of what it booted.
type ReportSigner interface {
	SignReport(reportData [ReportDataSize]byte) (report, certTable []byte, err error)
}

// ReportSignerFunc adapts a function to ReportSigner.
type ReportSignerFunc func(reportData [ReportDataSize]byte) (report, certTable []byte, err error)

// SignReport calls f.
func (f ReportSignerFunc) SignReport(reportData [ReportDataSize]byte) (report, certTable []byte, err error) {
	return f(reportData)
}

// Serve answers requests read from rw (hostd's end of the guest's port)
// until rw reaches EOF (returns nil), ctx is done (returns ctx.Err()) or a
// read or write fails. Malformed and oversize requests get an error response
// and the loop goes on; signer errors are logged and answered with a generic
// error response. When ctx is done, rw is closed if it is an io.Closer, or
// its deadline set to the past if it has SetDeadline, to unblock the read.
func Serve(ctx context.Context, rw io.ReadWriter, signer ReportSigner, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	stop := context.AfterFunc(ctx, func() {
		switch v := rw.(type) {
		case io.Closer:
			_ = v.Close()
		case deadliner:
			_ = v.SetDeadline(time.Unix(1, 0))
		}
	})
	defer stop()
	r := bufio.NewReaderSize(rw, 4096)
	for {
		line, err := readLine(r, MaxRequestLine)
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, io.EOF):
			return nil
		case errors.Is(err, ErrTooLarge):
			log.Warn("rejecting oversize report request", "err", err)
			if err := write(rw, EncodeError("request too large")); err != nil {
				return err
			}
			continue
		case err != nil:
			return fmt.Errorf("reading report request: %w", err)
		case len(line) == 0:
			continue
		}
		if err := write(rw, answer(line, signer, log)); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return err
		}
	}
}

func answer(line []byte, signer ReportSigner, log *slog.Logger) []byte {
	rd, err := ParseRequest(line)
	if err != nil {
		log.Warn("rejecting malformed report request", "err", err)
		switch {
		case errors.Is(err, ErrVersion):
			return EncodeError("unsupported version")
		default:
			return EncodeError("malformed request")
		}
	}
	report, certTable, err := signer.SignReport(rd)
	if err != nil {
		log.Error("signing simulated report", "err", err)
		return EncodeError("cannot sign report")
	}
	if len(report) == 0 {
		log.Error("signing simulated report", "err", "signer returned an empty report")
		return EncodeError("cannot sign report")
	}
	resp := EncodeResponse(report, certTable)
	if len(resp)-1 > MaxResponseLine {
		log.Error("signed report does not fit a response line", "bytes", len(resp))
		return EncodeError("report too large")
	}
	log.Debug("answered report request", "report_bytes", len(report), "cert_table_bytes", len(certTable))
	return resp
}

func write(w io.Writer, b []byte) error {
	if _, err := w.Write(b); err != nil {
		return fmt.Errorf("writing report response: %w", err)
	}
	return nil
}
