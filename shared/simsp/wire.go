package simsp

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// Protocol constants.
const (
	// Version is the only protocol version this package speaks.
	Version = 1
	// PortName is the virtio-serial port name (virtserialport name=...)
	// that carries the protocol.
	PortName = "confidant.sp"
	// ReportDataSize is the size of the SNP REPORT_DATA field.
	ReportDataSize = 64
	// MaxRequestLine is the largest request line, without its newline.
	MaxRequestLine = 8 << 10
	// MaxResponseLine is the largest response line, without its newline.
	MaxResponseLine = 64 << 10
	// MaxErrorLen is the longest error string a response may carry.
	MaxErrorLen = 1024
)

// Sentinel errors for outcomes callers branch on.
var (
	// ErrMalformed means a line is not a well-formed message (syntax,
	// unknown, duplicate or missing fields, wrong sizes, bad base64).
	ErrMalformed = errors.New("malformed simsp message")
	// ErrVersion means a message's version is not Version.
	ErrVersion = errors.New("unsupported simsp version")
	// ErrTooLarge means a line exceeds its size cap.
	ErrTooLarge = errors.New("simsp line too large")
	// ErrRemote means the simulated secure processor answered with an
	// error response; the error text follows in the wrapped message.
	ErrRemote = errors.New("simulated secure processor refused the request")
	// ErrBroken means an earlier exchange on this Client failed part way
	// (I/O error, timeout, malformed response), so request and response
	// can no longer be paired; open the port again.
	ErrBroken = errors.New("simsp client unusable after an earlier failure")
)

// EncodeRequest returns the request line (with its trailing newline) for
// reportData.
func EncodeRequest(reportData [ReportDataSize]byte) []byte {
	var b bytes.Buffer
	b.WriteString(`{"version":1,"report_data":"`)
	b.WriteString(base64.RawURLEncoding.EncodeToString(reportData[:]))
	b.WriteString("\"}\n")
	return b.Bytes()
}

// ParseRequest decodes one request line (without its newline) strictly and
// returns the requested REPORT_DATA.
func ParseRequest(line []byte) ([ReportDataSize]byte, error) {
	var rd [ReportDataSize]byte
	if len(line) > MaxRequestLine {
		return rd, fmt.Errorf("parsing request: %w (%d bytes)", ErrTooLarge, len(line))
	}
	f, err := parseObject(line, "version", "report_data")
	if err != nil {
		return rd, fmt.Errorf("parsing request: %w", err)
	}
	if err := checkVersion(f); err != nil {
		return rd, fmt.Errorf("parsing request: %w", err)
	}
	s, ok := f["report_data"]
	if !ok {
		return rd, fmt.Errorf("parsing request: %w: missing report_data", ErrMalformed)
	}
	b, err := decodeB64(s)
	if err != nil {
		return rd, fmt.Errorf("parsing request report_data: %w", err)
	}
	if len(b) != ReportDataSize {
		return rd, fmt.Errorf("parsing request: %w: report_data is %d bytes, want %d", ErrMalformed, len(b), ReportDataSize)
	}
	copy(rd[:], b)
	return rd, nil
}

// EncodeResponse returns a success response line (with its trailing
// newline). certTable may be empty, then the field is left out.
func EncodeResponse(report, certTable []byte) []byte {
	var b bytes.Buffer
	b.WriteString(`{"version":1,"report":"`)
	b.WriteString(base64.RawURLEncoding.EncodeToString(report))
	b.WriteByte('"')
	if len(certTable) > 0 {
		b.WriteString(`,"cert_table":"`)
		b.WriteString(base64.RawURLEncoding.EncodeToString(certTable))
		b.WriteByte('"')
	}
	b.WriteString("}\n")
	return b.Bytes()
}

// EncodeError returns an error response line (with its trailing newline).
// msg is cut to MaxErrorLen bytes and must not hold secrets: the guest
// prints it.
func EncodeError(msg string) []byte {
	if msg == "" {
		msg = "unspecified error"
	}
	if len(msg) > MaxErrorLen {
		msg = msg[:MaxErrorLen]
	}
	// json.Marshal of a string cannot fail; it also replaces invalid UTF-8.
	q, _ := json.Marshal(msg)
	var b bytes.Buffer
	b.WriteString(`{"version":1,"error":`)
	b.Write(q)
	b.WriteString("}\n")
	return b.Bytes()
}

// ParseResponse decodes one response line (without its newline) strictly.
// An error response yields an error matching ErrRemote.
func ParseResponse(line []byte) (report, certTable []byte, err error) {
	if len(line) > MaxResponseLine {
		return nil, nil, fmt.Errorf("parsing response: %w (%d bytes)", ErrTooLarge, len(line))
	}
	f, err := parseObject(line, "version", "report", "cert_table", "error")
	if err != nil {
		return nil, nil, fmt.Errorf("parsing response: %w", err)
	}
	if err := checkVersion(f); err != nil {
		return nil, nil, fmt.Errorf("parsing response: %w", err)
	}
	msg, isErr := f["error"]
	_, hasReport := f["report"]
	_, hasCerts := f["cert_table"]
	switch {
	case isErr && (hasReport || hasCerts):
		return nil, nil, fmt.Errorf("parsing response: %w: error together with a report", ErrMalformed)
	case isErr:
		if len(msg) > MaxErrorLen {
			return nil, nil, fmt.Errorf("parsing response: %w: error text is %d bytes", ErrMalformed, len(msg))
		}
		return nil, nil, fmt.Errorf("%w: %q", ErrRemote, msg)
	case !hasReport:
		return nil, nil, fmt.Errorf("parsing response: %w: missing report", ErrMalformed)
	}
	report, err = decodeB64(f["report"])
	if err != nil {
		return nil, nil, fmt.Errorf("parsing response report: %w", err)
	}
	if len(report) == 0 {
		return nil, nil, fmt.Errorf("parsing response: %w: empty report", ErrMalformed)
	}
	if hasCerts {
		certTable, err = decodeB64(f["cert_table"])
		if err != nil {
			return nil, nil, fmt.Errorf("parsing response cert_table: %w", err)
		}
	}
	return report, certTable, nil
}

func checkVersion(f map[string]string) error {
	v, ok := f["version"]
	if !ok {
		return fmt.Errorf("%w: missing version", ErrMalformed)
	}
	if v != strconv.Itoa(Version) {
		return fmt.Errorf("%w: %.20q", ErrVersion, v)
	}
	return nil
}

// parseObject parses a flat JSON object whose keys are all in allowed and
// whose values are strings or (for "version") an integer literal. Keys must
// match exactly (no case folding), each at most once; nothing may follow the
// object. It returns each value as text (numbers in their literal form).
func parseObject(line []byte, allowed ...string) (map[string]string, error) {
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, fmt.Errorf("%w: not a JSON object", ErrMalformed)
	}
	fields := make(map[string]string, len(allowed))
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
		}
		key, ok := tok.(string)
		if !ok {
			return nil, fmt.Errorf("%w: object key is not a string", ErrMalformed)
		}
		known := false
		for _, a := range allowed {
			known = known || a == key
		}
		if !known {
			return nil, fmt.Errorf("%w: unknown field %.40q", ErrMalformed, key)
		}
		if _, dup := fields[key]; dup {
			return nil, fmt.Errorf("%w: duplicate field %q", ErrMalformed, key)
		}
		tok, err = dec.Token()
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
		}
		switch v := tok.(type) {
		case string:
			if key == "version" {
				return nil, fmt.Errorf("%w: version is not a number", ErrMalformed)
			}
			fields[key] = v
		case json.Number:
			if key != "version" {
				return nil, fmt.Errorf("%w: field %q is not a string", ErrMalformed, key)
			}
			fields[key] = v.String()
		default:
			return nil, fmt.Errorf("%w: field %q has the wrong type", ErrMalformed, key)
		}
	}
	if _, err := dec.Token(); err != nil { // the closing '}'
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: trailing data after the object", ErrMalformed)
	}
	return fields, nil
}

// decodeB64 decodes unpadded base64url strictly: there is exactly one
// accepted encoding of each byte string.
func decodeB64(s string) ([]byte, error) {
	v, err := base64.RawURLEncoding.Strict().DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("%w: bad base64url", ErrMalformed)
	}
	// DecodeString skips \r and \n; reject them so the encoding is unique.
	if base64.RawURLEncoding.EncodedLen(len(v)) != len(s) {
		return nil, fmt.Errorf("%w: unexpected characters in base64url", ErrMalformed)
	}
	return v, nil
}

// readLine reads one '\n'-terminated line and returns it without the
// newline. A line longer than limit yields ErrTooLarge after the rest of it
// has been read and discarded, so the stream stays in step. io.EOF is
// returned only at a line boundary; a partial last line yields
// io.ErrUnexpectedEOF.
func readLine(r *bufio.Reader, limit int) ([]byte, error) {
	var line []byte
	tooLarge := false
	for {
		frag, err := r.ReadSlice('\n')
		if !tooLarge {
			line = append(line, frag...)
			if len(line) > limit+1 || (len(line) == limit+1 && line[limit] != '\n') {
				tooLarge, line = true, nil
			}
		}
		switch {
		case err == nil && tooLarge:
			return nil, fmt.Errorf("reading line: %w (limit %d bytes)", ErrTooLarge, limit)
		case err == nil:
			return line[:len(line)-1], nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF) && len(line) == 0 && !tooLarge:
			return nil, io.EOF
		case errors.Is(err, io.EOF):
			return nil, io.ErrUnexpectedEOF
		default:
			return nil, err
		}
	}
}
