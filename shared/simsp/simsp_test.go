package simsp

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha512"
	"encoding/base64"
	"errors"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

var testRD = func() (rd [ReportDataSize]byte) {
	for i := range rd {
		rd[i] = byte(i)
	}
	return rd
}()

func TestParseRequest(t *testing.T) {
	good := b64(testRD[:])
	tests := map[string]struct {
		line    string
		wantErr error
	}{
		"ok":                  {line: `{"version":1,"report_data":"` + good + `"}`},
		"ok reordered":        {line: `{"report_data":"` + good + `","version":1}`},
		"ok whitespace":       {line: ` { "version" : 1 , "report_data" : "` + good + `" } `},
		"empty":               {line: ``, wantErr: ErrMalformed},
		"not object":          {line: `[1]`, wantErr: ErrMalformed},
		"null":                {line: `null`, wantErr: ErrMalformed},
		"missing version":     {line: `{"report_data":"` + good + `"}`, wantErr: ErrMalformed},
		"missing report_data": {line: `{"version":1}`, wantErr: ErrMalformed},
		"version 2":           {line: `{"version":2,"report_data":"` + good + `"}`, wantErr: ErrVersion},
		"version 1.0":         {line: `{"version":1.0,"report_data":"` + good + `"}`, wantErr: ErrVersion},
		"version string":      {line: `{"version":"1","report_data":"` + good + `"}`, wantErr: ErrMalformed},
		"unknown field":       {line: `{"version":1,"report_data":"` + good + `","x":"y"}`, wantErr: ErrMalformed},
		// HOST_DATA is the guest's identity, set by the host: a guest cannot
		// ask for another's.
		"guest picks host_data": {line: `{"version":1,"report_data":"` + good + `","host_data":"` + b64(testRD[:32]) + `"}`, wantErr: ErrMalformed},
		"case folded key":       {line: `{"Version":1,"report_data":"` + good + `"}`, wantErr: ErrMalformed},
		"duplicate field":       {line: `{"version":1,"report_data":"` + good + `","report_data":"` + good + `"}`, wantErr: ErrMalformed},
		"trailing data":         {line: `{"version":1,"report_data":"` + good + `"}{}`, wantErr: ErrMalformed},
		"trailing garbage":      {line: `{"version":1,"report_data":"` + good + `"} x`, wantErr: ErrMalformed},
		"short report_data":     {line: `{"version":1,"report_data":"` + b64(testRD[:63]) + `"}`, wantErr: ErrMalformed},
		"long report_data":      {line: `{"version":1,"report_data":"` + b64(append(testRD[:], 0)) + `"}`, wantErr: ErrMalformed},
		"padded base64":         {line: `{"version":1,"report_data":"` + base64.URLEncoding.EncodeToString(testRD[:]) + `"}`, wantErr: ErrMalformed},
		"std base64":            {line: `{"version":1,"report_data":"` + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{0xff}, 64)) + `"}`, wantErr: ErrMalformed},
		"newline in base64":     {line: `{"version":1,"report_data":"` + good[:10] + `\n` + good[10:] + `"}`, wantErr: ErrMalformed},
		"report_data number":    {line: `{"version":1,"report_data":5}`, wantErr: ErrMalformed},
		"nested":                {line: `{"version":1,"report_data":{}}`, wantErr: ErrMalformed},
		"truncated":             {line: `{"version":1,"report_data":"` + good, wantErr: ErrMalformed},
		"too large":             {line: `{"version":1,"report_data":"` + good + `"}` + strings.Repeat(" ", MaxRequestLine), wantErr: ErrTooLarge},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			rd, err := ParseRequest([]byte(tc.line))
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("ParseRequest() error = %v, want %v", err, tc.wantErr)
			}
			if tc.wantErr == nil && rd != testRD {
				t.Fatalf("ParseRequest() = %x, want %x", rd, testRD)
			}
		})
	}
}

func TestRequestRoundTrip(t *testing.T) {
	line := EncodeRequest(testRD)
	if !bytes.HasSuffix(line, []byte("\n")) {
		t.Fatalf("EncodeRequest() = %q, want a trailing newline", line)
	}
	rd, err := ParseRequest(bytes.TrimSuffix(line, []byte("\n")))
	if err != nil {
		t.Fatalf("ParseRequest(EncodeRequest()) error = %v", err)
	}
	if rd != testRD {
		t.Fatalf("round trip = %x, want %x", rd, testRD)
	}
}

func TestParseResponse(t *testing.T) {
	rep := b64([]byte("report"))
	ct := b64([]byte("certs"))
	tests := map[string]struct {
		line          string
		wantReport    string
		wantCertTable string
		wantErr       error
	}{
		"ok":                 {line: `{"version":1,"report":"` + rep + `","cert_table":"` + ct + `"}`, wantReport: "report", wantCertTable: "certs"},
		"ok no certs":        {line: `{"version":1,"report":"` + rep + `"}`, wantReport: "report"},
		"remote error":       {line: `{"version":1,"error":"no"}`, wantErr: ErrRemote},
		"error and report":   {line: `{"version":1,"error":"no","report":"` + rep + `"}`, wantErr: ErrMalformed},
		"error and certs":    {line: `{"version":1,"error":"no","cert_table":"` + ct + `"}`, wantErr: ErrMalformed},
		"error too long":     {line: `{"version":1,"error":"` + strings.Repeat("e", MaxErrorLen+1) + `"}`, wantErr: ErrMalformed},
		"nothing":            {line: `{"version":1}`, wantErr: ErrMalformed},
		"empty report":       {line: `{"version":1,"report":""}`, wantErr: ErrMalformed},
		"certs only":         {line: `{"version":1,"cert_table":"` + ct + `"}`, wantErr: ErrMalformed},
		"version 0":          {line: `{"version":0,"report":"` + rep + `"}`, wantErr: ErrVersion},
		"missing version":    {line: `{"report":"` + rep + `"}`, wantErr: ErrMalformed},
		"unknown field":      {line: `{"version":1,"report":"` + rep + `","vcek":""}`, wantErr: ErrMalformed},
		"eight char report":  {line: `{"version":1,"report":"cmVwb3J0"}`, wantReport: "report"},
		"bad base64 report":  {line: `{"version":1,"report":"cmVwb3J0=="}`, wantErr: ErrMalformed},
		"bad base64 certs":   {line: `{"version":1,"report":"` + rep + `","cert_table":"+/"}`, wantErr: ErrMalformed},
		"duplicate report":   {line: `{"version":1,"report":"` + rep + `","report":"` + rep + `"}`, wantErr: ErrMalformed},
		"trailing object":    {line: `{"version":1,"report":"` + rep + `"}{}`, wantErr: ErrMalformed},
		"too large":          {line: `{"version":1,"report":"` + strings.Repeat("A", MaxResponseLine) + `"}`, wantErr: ErrTooLarge},
		"array":              {line: `[]`, wantErr: ErrMalformed},
		"error is a number":  {line: `{"version":1,"error":3}`, wantErr: ErrMalformed},
		"version is a float": {line: `{"version":1e0,"report":"` + rep + `"}`, wantErr: ErrVersion},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			report, certTable, err := ParseResponse([]byte(tc.line))
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("ParseResponse() error = %v, want %v", err, tc.wantErr)
			}
			if string(report) != tc.wantReport || string(certTable) != tc.wantCertTable {
				t.Fatalf("ParseResponse() = %q, %q, want %q, %q", report, certTable, tc.wantReport, tc.wantCertTable)
			}
		})
	}
}

func TestEncodeError(t *testing.T) {
	tests := map[string]struct {
		msg, want string
	}{
		"plain":        {msg: "no", want: "no"},
		"empty":        {msg: "", want: "unspecified error"},
		"long":         {msg: strings.Repeat("x", MaxErrorLen+10), want: strings.Repeat("x", MaxErrorLen)},
		"quote and nl": {msg: "a\"b\nc", want: "a\"b\nc"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			line := EncodeError(tc.msg)
			if bytes.Count(line, []byte("\n")) != 1 || !bytes.HasSuffix(line, []byte("\n")) {
				t.Fatalf("EncodeError() = %q, want exactly one newline, at the end", line)
			}
			_, _, err := ParseResponse(bytes.TrimSuffix(line, []byte("\n")))
			if !errors.Is(err, ErrRemote) {
				t.Fatalf("ParseResponse(EncodeError()) error = %v, want ErrRemote", err)
			}
			if !strings.Contains(err.Error(), strconv.Quote(tc.want)) {
				t.Errorf("error %q does not carry the message %q", err, tc.want)
			}
		})
	}
}

func TestReadLine(t *testing.T) {
	tests := map[string]struct {
		in       string
		limit    int
		want     []string
		wantLast error
	}{
		"two lines":              {in: "ab\ncd\n", limit: 4, want: []string{"ab", "cd"}, wantLast: io.EOF},
		"exactly limit":          {in: "abcd\n", limit: 4, want: []string{"abcd"}, wantLast: io.EOF},
		"over limit then resync": {in: "abcde\nok\n", limit: 4, want: []string{"!", "ok"}, wantLast: io.EOF},
		"long over buffer":       {in: strings.Repeat("x", 10000) + "\nok\n", limit: 4, want: []string{"!", "ok"}, wantLast: io.EOF},
		"long within limit":      {in: strings.Repeat("x", 9000) + "\n", limit: 9000, want: []string{strings.Repeat("x", 9000)}, wantLast: io.EOF},
		"partial last line":      {in: "ab\ncd", limit: 4, want: []string{"ab"}, wantLast: io.ErrUnexpectedEOF},
		"partial oversize":       {in: "abcdef", limit: 4, wantLast: io.ErrUnexpectedEOF},
		"empty line":             {in: "\n", limit: 4, want: []string{""}, wantLast: io.EOF},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			r := bufio.NewReaderSize(strings.NewReader(tc.in), 16)
			var got []string
			var err error
			for {
				var line []byte
				line, err = readLine(r, tc.limit)
				if errors.Is(err, ErrTooLarge) {
					got = append(got, "!")
					continue
				}
				if err != nil {
					break
				}
				got = append(got, string(line))
			}
			if !errors.Is(err, tc.wantLast) {
				t.Fatalf("last error = %v, want %v", err, tc.wantLast)
			}
			if strings.Join(got, "|") != strings.Join(tc.want, "|") {
				t.Fatalf("lines = %q, want %q", got, tc.want)
			}
		})
	}
}

// echoSigner returns a fake "report" that embeds the requested REPORT_DATA,
// so tests can check pairing of requests and responses.
type echoSigner struct{ calls int }

func (s *echoSigner) SignReport(rd [ReportDataSize]byte) ([]byte, []byte, error) {
	s.calls++
	return append([]byte("REPORT:"), rd[:]...), []byte("CERTS"), nil
}

func startServer(t *testing.T, signer ReportSigner) (client net.Conn, done chan error, cancel context.CancelFunc) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	c, s := net.Pipe()
	ch := make(chan error, 1)
	go func() { ch <- Serve(ctx, s, signer, slog.New(slog.DiscardHandler)) }()
	t.Cleanup(func() {
		cancel()
		c.Close()
		select {
		case <-ch:
		case <-time.After(5 * time.Second):
			t.Error("Serve did not return after cancel")
		}
	})
	return c, ch, cancel
}

func TestClientServer(t *testing.T) {
	signer := &echoSigner{}
	conn, _, _ := startServer(t, signer)
	cl := NewClient(conn)
	for i := range 3 {
		rd := sha512.Sum512([]byte{byte(i)})
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		report, certs, err := cl.GetReport(ctx, rd)
		cancel()
		if err != nil {
			t.Fatalf("GetReport(%d) error = %v", i, err)
		}
		if want := append([]byte("REPORT:"), rd[:]...); !bytes.Equal(report, want) {
			t.Fatalf("GetReport(%d) report = %q, want %q", i, report, want)
		}
		if string(certs) != "CERTS" {
			t.Fatalf("GetReport(%d) cert table = %q", i, certs)
		}
	}
	if signer.calls != 3 {
		t.Fatalf("signer called %d times, want 3", signer.calls)
	}
}

func TestClientRemoteErrorKeepsClientUsable(t *testing.T) {
	fail := true
	signer := ReportSignerFunc(func(rd [ReportDataSize]byte) ([]byte, []byte, error) {
		if fail {
			fail = false
			return nil, nil, errors.New("secret internal detail")
		}
		return []byte("R"), nil, nil
	})
	conn, _, _ := startServer(t, signer)
	cl := NewClient(conn)
	_, _, err := cl.GetReport(t.Context(), testRD)
	if !errors.Is(err, ErrRemote) {
		t.Fatalf("first GetReport error = %v, want ErrRemote", err)
	}
	if strings.Contains(err.Error(), "secret") {
		t.Fatalf("error response leaks the signer's error: %v", err)
	}
	report, certs, err := cl.GetReport(t.Context(), testRD)
	if err != nil || string(report) != "R" || certs != nil {
		t.Fatalf("second GetReport = %q, %q, %v; want R, nil, nil", report, certs, err)
	}
}

func TestServeAnswersBadRequestsAndContinues(t *testing.T) {
	conn, _, _ := startServer(t, &echoSigner{})
	r := bufio.NewReader(conn)
	exchange := func(send string) string {
		t.Helper()
		if err := conn.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(conn, send); err != nil {
			t.Fatalf("writing %q: %v", send, err)
		}
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("reading response to %.40q: %v", send, err)
		}
		return line
	}
	tests := []struct {
		name, send, wantSub string
	}{
		{"garbage", "hello\n", `"error":"malformed request"`},
		{"version", `{"version":9,"report_data":"` + b64(testRD[:]) + "\"}\n", `"error":"unsupported version"`},
		{"oversize", strings.Repeat("x", MaxRequestLine+100) + "\n", `"error":"request too large"`},
		{"blank lines skipped", "\n\n" + string(EncodeRequest(testRD)), `"report":"`},
		{"still fine", string(EncodeRequest(testRD)), `"report":"`},
	}
	for _, tc := range tests {
		got := exchange(tc.send)
		if !strings.Contains(got, tc.wantSub) {
			t.Errorf("%s: response %q, want it to contain %q", tc.name, got, tc.wantSub)
		}
	}
}

func TestServeReturnsNilOnEOF(t *testing.T) {
	c, s := net.Pipe()
	done := make(chan error, 1)
	go func() { done <- Serve(t.Context(), s, &echoSigner{}, nil) }()
	c.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve() = %v, want nil at EOF", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return at EOF")
	}
}

func TestServeReturnsOnCancel(t *testing.T) {
	_, done, cancel := startServer(t, &echoSigner{})
	cancel()
	select {
	case err := <-done:
		done <- err // for the cleanup
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Serve() = %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after cancel")
	}
}

// silentPeer reads requests and never answers, or answers with raw lines.
func silentPeer(t *testing.T, answers ...string) net.Conn {
	t.Helper()
	c, s := net.Pipe()
	t.Cleanup(func() { c.Close(); s.Close() })
	go func() {
		r := bufio.NewReader(s)
		for _, a := range answers {
			if _, err := r.ReadString('\n'); err != nil {
				return
			}
			if _, err := io.WriteString(s, a); err != nil {
				return
			}
		}
		_, _ = io.Copy(io.Discard, r)
	}()
	return c
}

func TestClientFailures(t *testing.T) {
	tests := map[string]struct {
		answers []string
		timeout time.Duration
		wantErr error
	}{
		"timeout":          {timeout: 100 * time.Millisecond, wantErr: context.DeadlineExceeded},
		"malformed":        {answers: []string{"{}\n"}, timeout: 5 * time.Second, wantErr: ErrMalformed},
		"oversize":         {answers: []string{strings.Repeat("A", MaxResponseLine+1) + "\n"}, timeout: 5 * time.Second, wantErr: ErrTooLarge},
		"wrong version":    {answers: []string{`{"version":2,"report":"AA"}` + "\n"}, timeout: 5 * time.Second, wantErr: ErrVersion},
		"unterminated EOF": {answers: []string{`{"version":1,"report":"AA"}`}, timeout: 5 * time.Second, wantErr: io.ErrUnexpectedEOF},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			conn := silentPeer(t, tc.answers...)
			if name == "unterminated EOF" {
				// Close the peer after its answer so the client sees EOF.
				conn = closingPeer(t, tc.answers[0])
			}
			cl := NewClient(conn)
			ctx, cancel := context.WithTimeout(t.Context(), tc.timeout)
			defer cancel()
			_, _, err := cl.GetReport(ctx, testRD)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("GetReport() error = %v, want %v", err, tc.wantErr)
			}
			_, _, err = cl.GetReport(t.Context(), testRD)
			if !errors.Is(err, ErrBroken) {
				t.Fatalf("GetReport() after failure error = %v, want ErrBroken", err)
			}
		})
	}
}

func closingPeer(t *testing.T, answer string) net.Conn {
	t.Helper()
	c, s := net.Pipe()
	t.Cleanup(func() { c.Close() })
	go func() {
		defer s.Close()
		if _, err := bufio.NewReader(s).ReadString('\n'); err != nil {
			return
		}
		_, _ = io.WriteString(s, answer)
	}()
	return c
}

func TestClientCancelledContext(t *testing.T) {
	cl := NewClient(silentPeer(t))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, _, err := cl.GetReport(ctx, testRD); !errors.Is(err, context.Canceled) {
		t.Fatalf("GetReport() error = %v, want context.Canceled", err)
	}
}

func FuzzParseRequest(f *testing.F) {
	f.Add(bytes.TrimSuffix(EncodeRequest(testRD), []byte("\n")))
	f.Add([]byte(`{"version":1,"report_data":""}`))
	f.Add([]byte(`{"version":1,"report_data":"` + b64(testRD[:]) + `","version":1}`))
	f.Add([]byte(`{"version":1e400}`))
	f.Add([]byte(`{`))
	f.Fuzz(func(t *testing.T, line []byte) {
		rd, err := ParseRequest(line)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrVersion) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("ParseRequest() error %v matches no sentinel", err)
			}
			return
		}
		again, err := ParseRequest(bytes.TrimSuffix(EncodeRequest(rd), []byte("\n")))
		if err != nil || again != rd {
			t.Fatalf("re-encoding an accepted request: %v, %x != %x", err, again, rd)
		}
	})
}

func FuzzParseResponse(f *testing.F) {
	f.Add(bytes.TrimSuffix(EncodeResponse([]byte("report"), []byte("certs")), []byte("\n")))
	f.Add(bytes.TrimSuffix(EncodeError("nope"), []byte("\n")))
	f.Add([]byte(`{"version":1,"report":"AA","error":"x"}`))
	f.Fuzz(func(t *testing.T, line []byte) {
		report, certTable, err := ParseResponse(line)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrVersion) && !errors.Is(err, ErrTooLarge) && !errors.Is(err, ErrRemote) {
				t.Fatalf("ParseResponse() error %v matches no sentinel", err)
			}
			return
		}
		if len(report) == 0 {
			t.Fatal("ParseResponse() accepted an empty report")
		}
		r2, c2, err := ParseResponse(bytes.TrimSuffix(EncodeResponse(report, certTable), []byte("\n")))
		if err != nil || !bytes.Equal(r2, report) || !bytes.Equal(c2, certTable) {
			t.Fatalf("re-encoding an accepted response: %v", err)
		}
	})
}
