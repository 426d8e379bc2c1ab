package evidence

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// Version is the only envelope format version.
const Version = 1

// Size limits enforced by Decode and Encode.
const (
	// SNPReportSize is the size of an SEV-SNP attestation report (go-sev-guest
	// abi.ReportSize).
	SNPReportSize = 0x4A0
	// TDXQuoteMinSize and TDXQuoteMaxSize bound a TDX quote (go-tdx-guest
	// abi.QuoteMinSize; the maximum leaves room for an embedded PCK chain).
	TDXQuoteMinSize = 0x3FC
	TDXQuoteMaxSize = 64 << 10
	// MaxCertTableSize caps the SNP certificate table.
	MaxCertTableSize = 64 << 10
	// MaxTPMSize caps the TPM attestation (quotes plus event log).
	MaxTPMSize = 1 << 20
	// MaxEnvelopeSize caps the whole encoded envelope.
	MaxEnvelopeSize = 2 << 20
)

// Envelope carries one attestation: the runtime data, the hardware evidence
// and, optionally, the vTPM evidence. See the package documentation for the
// JSON form.
type Envelope struct {
	// Version is the format version; it must be Version.
	Version int
	// TEE names the hardware that produced Report.
	TEE Kind
	// RuntimeData holds the exact canonical runtime data bytes whose SHA-512
	// is the report's REPORT_DATA and whose SHA-256 is the quote's
	// extraData. Decode checks only its size; use ParseRuntimeData.
	RuntimeData []byte
	// Report is the SNP report (KindSNP, KindSimSNP) or TDX quote (KindTDX).
	Report []byte
	// CertTable is optional: the SNP extended-report certificate table.
	CertTable []byte
	// TPM is optional: go-tpm-tools' attest.Attestation protobuf bytes.
	TPM []byte
}

// The JSON field names, in the order they are written.
const (
	fieldVersion     = "version"
	fieldTEE         = "tee"
	fieldRuntimeData = "runtime_data"
	fieldReport      = "report"
	fieldCertTable   = "cert_table"
	fieldTPM         = "tpm"
)

type envelopeWire struct {
	Version     int    `json:"version"`
	TEE         string `json:"tee"`
	RuntimeData B64    `json:"runtime_data"`
	Report      B64    `json:"report"`
	CertTable   B64    `json:"cert_table,omitempty"`
	TPM         B64    `json:"tpm,omitempty"`
}

// Decode parses and checks an encoded envelope. It is strict: unknown,
// duplicate or differently cased fields, trailing data, a version other
// than Version, an unknown kind, missing runtime_data or report, padded or
// non-URL base64, a report of the wrong size for its kind and fields over
// their caps are errors. Every error matches ErrMalformed; ErrVersion,
// ErrUnknownKind and ErrTooLarge are matched as well where they apply.
func Decode(b []byte) (*Envelope, error) {
	if len(b) > MaxEnvelopeSize {
		return nil, malformed(fmt.Errorf("decoding evidence envelope: %d bytes: %w", len(b), ErrTooLarge))
	}
	e, err := decode(b)
	if err != nil {
		return nil, malformed(fmt.Errorf("decoding evidence envelope: %w", err))
	}
	return e, nil
}

func decode(b []byte) (*Envelope, error) {
	e, ok := decodeFast(b)
	if !ok {
		var err error
		if e, err = decodeGeneral(b); err != nil {
			return nil, err
		}
	}
	if err := e.validate(); err != nil {
		return nil, err
	}
	return e, nil
}

// decodeGeneral decodes any JSON (escapes, odd whitespace, ...) with
// encoding/json and reports the first problem; decode calls it when
// decodeFast declines.
func decodeGeneral(b []byte) (*Envelope, error) {
	fields, err := topLevelFields(b)
	if err != nil {
		return nil, err
	}
	var e Envelope
	raw, ok := fields[fieldVersion]
	if !ok {
		return nil, errors.New("missing version")
	}
	if err := json.Unmarshal(raw, &e.Version); err != nil {
		return nil, fmt.Errorf("version: %w", errors.Join(ErrVersion, err))
	}
	if e.Version != Version {
		return nil, fmt.Errorf("version %d: %w", e.Version, ErrVersion)
	}
	raw, ok = fields[fieldTEE]
	if !ok {
		return nil, errors.New("missing tee")
	}
	var tee string
	if err := json.Unmarshal(raw, &tee); err != nil {
		return nil, fmt.Errorf("tee: %w", err)
	}
	if e.TEE, err = ParseKind(tee); err != nil {
		return nil, err
	}
	for _, f := range []struct {
		name string
		dst  *[]byte
	}{
		{fieldRuntimeData, &e.RuntimeData},
		{fieldReport, &e.Report},
		{fieldCertTable, &e.CertTable},
		{fieldTPM, &e.TPM},
	} {
		raw, ok := fields[f.name]
		if !ok {
			continue
		}
		if string(raw) == "null" {
			return nil, fmt.Errorf("%s: null", f.name)
		}
		var v B64
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, fmt.Errorf("%s: %w", f.name, err)
		}
		*f.dst = v
	}
	return &e, nil
}

// topLevelFields splits a JSON object into its members, rejecting unknown,
// duplicate and differently cased names and trailing data.
func topLevelFields(b []byte) (map[string]json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	if tok != json.Delim('{') {
		return nil, errors.New("not a JSON object")
	}
	fields := make(map[string]json.RawMessage)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		name, ok := tok.(string)
		if !ok {
			return nil, errors.New("object key is not a string")
		}
		switch name {
		case fieldVersion, fieldTEE, fieldRuntimeData, fieldReport, fieldCertTable, fieldTPM:
		default:
			return nil, fmt.Errorf("unknown field %q", name)
		}
		if _, dup := fields[name]; dup {
			return nil, fmt.Errorf("duplicate field %q", name)
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		fields[name] = raw
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return nil, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("trailing data")
	}
	return fields, nil
}

// validate checks the decoded fields against the kind's size rules.
func (e *Envelope) validate() error {
	if e.Version != Version {
		return fmt.Errorf("version %d: %w", e.Version, ErrVersion)
	}
	if _, err := ParseKind(string(e.TEE)); err != nil {
		return err
	}
	if len(e.RuntimeData) == 0 {
		return errors.New("missing runtime_data")
	}
	if len(e.RuntimeData) > MaxRuntimeDataSize {
		return fmt.Errorf("runtime_data is %d bytes: %w", len(e.RuntimeData), ErrTooLarge)
	}
	if len(e.Report) == 0 {
		return errors.New("missing report")
	}
	switch e.TEE {
	case KindSNP, KindSimSNP:
		if len(e.Report) != SNPReportSize {
			return fmt.Errorf("SNP report is %d bytes, want %d", len(e.Report), SNPReportSize)
		}
	case KindTDX:
		if len(e.Report) > TDXQuoteMaxSize {
			return fmt.Errorf("TDX quote is %d bytes: %w", len(e.Report), ErrTooLarge)
		}
		if len(e.Report) < TDXQuoteMinSize {
			return fmt.Errorf("TDX quote is %d bytes, want at least %d", len(e.Report), TDXQuoteMinSize)
		}
		if len(e.CertTable) > 0 {
			return errors.New("cert_table is only for SNP reports")
		}
	}
	if len(e.CertTable) > MaxCertTableSize {
		return fmt.Errorf("cert_table is %d bytes: %w", len(e.CertTable), ErrTooLarge)
	}
	if len(e.TPM) > MaxTPMSize {
		return fmt.Errorf("tpm is %d bytes: %w", len(e.TPM), ErrTooLarge)
	}
	return nil
}

// Encode checks e with the same rules as Decode and encodes it. Empty
// optional fields are left out.
func (e *Envelope) Encode() ([]byte, error) {
	if err := e.validate(); err != nil {
		return nil, malformed(fmt.Errorf("encoding evidence envelope: %w", err))
	}
	b, err := json.Marshal(envelopeWire{
		Version:     e.Version,
		TEE:         string(e.TEE),
		RuntimeData: e.RuntimeData,
		Report:      e.Report,
		CertTable:   e.CertTable,
		TPM:         e.TPM,
	})
	if err != nil {
		return nil, fmt.Errorf("encoding evidence envelope: %w", err)
	}
	return b, nil
}

// MarshalJSON encodes e as Encode does, so an Envelope can be embedded in
// other JSON documents.
func (e Envelope) MarshalJSON() ([]byte, error) {
	return e.Encode()
}

// UnmarshalJSON decodes e with every check of Decode.
func (e *Envelope) UnmarshalJSON(b []byte) error {
	d, err := Decode(b)
	if err != nil {
		return err
	}
	*e = *d
	return nil
}
