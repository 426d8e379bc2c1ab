package evidence

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	sevabi "github.com/google/go-sev-guest/abi"
	tdxabi "github.com/google/go-tdx-guest/abi"
)

func TestSizeConstants(t *testing.T) {
	if SNPReportSize != sevabi.ReportSize {
		t.Errorf("SNPReportSize = %d, want abi.ReportSize %d", SNPReportSize, sevabi.ReportSize)
	}
	if TDXQuoteMinSize != tdxabi.QuoteMinSize {
		t.Errorf("TDXQuoteMinSize = %d, want abi.QuoteMinSize %d", TDXQuoteMinSize, tdxabi.QuoteMinSize)
	}
}

func TestParseKind(t *testing.T) {
	tests := map[string]struct {
		in      string
		want    Kind
		wantErr error
	}{
		"snp":        {in: "sev-snp", want: KindSNP},
		"tdx":        {in: "tdx", want: KindTDX},
		"sim":        {in: "sim-sev-snp", want: KindSimSNP},
		"empty":      {in: "", wantErr: ErrUnknownKind},
		"upper case": {in: "SEV-SNP", wantErr: ErrUnknownKind},
		"other":      {in: "sgx", wantErr: ErrUnknownKind},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := ParseKind(tt.in)
			if !errors.Is(err, tt.wantErr) || got != tt.want {
				t.Errorf("ParseKind(%q) = %q, %v; want %q, %v", tt.in, got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func testEnvelope() *Envelope {
	return &Envelope{
		Version:     Version,
		TEE:         KindSNP,
		RuntimeData: []byte(`{"runtime":"data"}`),
		Report:      bytes.Repeat([]byte{0xfb}, SNPReportSize),
		CertTable:   []byte{0xff, 0xfe, 1},
		TPM:         []byte{0x0a, 0x01, 0x3f},
	}
}

func TestEnvelopeRoundTrip(t *testing.T) {
	tests := map[string]func(e *Envelope){
		"full":         func(*Envelope) {},
		"no optionals": func(e *Envelope) { e.CertTable, e.TPM = nil, nil },
		"sim":          func(e *Envelope) { e.TEE = KindSimSNP },
		"tdx":          func(e *Envelope) { e.TEE, e.Report, e.CertTable = KindTDX, make([]byte, 5000), nil },
	}
	for name, mutate := range tests {
		t.Run(name, func(t *testing.T) {
			e := testEnvelope()
			mutate(e)
			b, err := e.Encode()
			if err != nil {
				t.Fatalf("Encode: %v", err)
			}
			got, err := Decode(b)
			if err != nil {
				t.Fatalf("Decode(%s): %v", b, err)
			}
			if got.Version != e.Version || got.TEE != e.TEE || !bytes.Equal(got.RuntimeData, e.RuntimeData) ||
				!bytes.Equal(got.Report, e.Report) || !bytes.Equal(got.CertTable, e.CertTable) || !bytes.Equal(got.TPM, e.TPM) {
				t.Errorf("Decode(Encode(e)) = %+v, want %+v", got, e)
			}
		})
	}
}

func TestEnvelopeEncoding(t *testing.T) {
	b, err := testEnvelope().Encode()
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for _, want := range []string{`"version":1`, `"tee":"sev-snp"`, `"cert_table":"__4B"`, `"tpm":"CgE_"`} {
		if !strings.Contains(s, want) {
			t.Errorf("Encode() = %s, want it to contain %s", s, want)
		}
	}
	if strings.Contains(s, "=") {
		t.Errorf("Encode() = %s, want no base64 padding", s)
	}
}

func TestEnvelopeEmbedded(t *testing.T) {
	type body struct {
		Evidence Envelope `json:"evidence"`
	}
	b, err := json.Marshal(body{Evidence: *testEnvelope()})
	if err != nil {
		t.Fatalf("Marshal: %v", err)
	}
	var got body
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatalf("Unmarshal: %v", err)
	}
	if !bytes.Equal(got.Evidence.Report, testEnvelope().Report) {
		t.Error("embedded envelope did not round-trip")
	}
	bad := bytes.Replace(b, []byte(`"version":1`), []byte(`"version":2`), 1)
	if err := json.Unmarshal(bad, &got); !errors.Is(err, ErrVersion) {
		t.Errorf("Unmarshal(version 2) error = %v, want ErrVersion", err)
	}
}

// encodeFields builds an envelope JSON object from raw members, in order.
func encodeFields(kv ...string) []byte {
	var b strings.Builder
	b.WriteByte('{')
	for i := 0; i < len(kv); i += 2 {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`"` + kv[i] + `":` + kv[i+1])
	}
	b.WriteByte('}')
	return []byte(b.String())
}

func TestDecodeErrors(t *testing.T) {
	q := func(b []byte) string { return `"` + b64(b) + `"` }
	rd := q([]byte("rd"))
	report := q(make([]byte, SNPReportSize))
	valid := func(extra ...string) []byte {
		return encodeFields(append([]string{"version", "1", "tee", `"sev-snp"`, "runtime_data", rd, "report", report}, extra...)...)
	}
	if _, err := Decode(valid()); err != nil {
		t.Fatalf("Decode(valid): %v", err)
	}
	tests := map[string]struct {
		in      []byte
		wantErr error
	}{
		"empty":                {in: nil, wantErr: ErrMalformed},
		"array":                {in: []byte(`[]`), wantErr: ErrMalformed},
		"truncated":            {in: valid()[:40], wantErr: ErrMalformed},
		"trailing data":        {in: append(valid(), `{}`...), wantErr: ErrMalformed},
		"trailing brace":       {in: append(valid(), '}'), wantErr: ErrMalformed},
		"unknown field":        {in: valid("extra", "1"), wantErr: ErrMalformed},
		"duplicate field":      {in: valid("report", report), wantErr: ErrMalformed},
		"upper-case field":     {in: encodeFields("Version", "1", "tee", `"sev-snp"`, "runtime_data", rd, "report", report), wantErr: ErrMalformed},
		"missing version":      {in: encodeFields("tee", `"sev-snp"`, "runtime_data", rd, "report", report), wantErr: ErrMalformed},
		"version 2":            {in: encodeFields("version", "2", "tee", `"sev-snp"`, "runtime_data", rd, "report", report), wantErr: ErrVersion},
		"version 0":            {in: encodeFields("version", "0", "tee", `"sev-snp"`, "runtime_data", rd, "report", report), wantErr: ErrVersion},
		"version string":       {in: encodeFields("version", `"1"`, "tee", `"sev-snp"`, "runtime_data", rd, "report", report), wantErr: ErrVersion},
		"version float":        {in: encodeFields("version", `1.5`, "tee", `"sev-snp"`, "runtime_data", rd, "report", report), wantErr: ErrVersion},
		"missing tee":          {in: encodeFields("version", "1", "runtime_data", rd, "report", report), wantErr: ErrMalformed},
		"unknown tee":          {in: encodeFields("version", "1", "tee", `"sgx"`, "runtime_data", rd, "report", report), wantErr: ErrUnknownKind},
		"tee number":           {in: encodeFields("version", "1", "tee", `1`, "runtime_data", rd, "report", report), wantErr: ErrMalformed},
		"missing runtime data": {in: encodeFields("version", "1", "tee", `"sev-snp"`, "report", report), wantErr: ErrMalformed},
		"empty runtime data":   {in: encodeFields("version", "1", "tee", `"sev-snp"`, "runtime_data", `""`, "report", report), wantErr: ErrMalformed},
		"null runtime data":    {in: encodeFields("version", "1", "tee", `"sev-snp"`, "runtime_data", `null`, "report", report), wantErr: ErrMalformed},
		"missing report":       {in: encodeFields("version", "1", "tee", `"sev-snp"`, "runtime_data", rd), wantErr: ErrMalformed},
		"short SNP report":     {in: encodeFields("version", "1", "tee", `"sev-snp"`, "runtime_data", rd, "report", q(make([]byte, SNPReportSize-1))), wantErr: ErrMalformed},
		"long sim report":      {in: encodeFields("version", "1", "tee", `"sim-sev-snp"`, "runtime_data", rd, "report", q(make([]byte, SNPReportSize+1))), wantErr: ErrMalformed},
		"short TDX quote":      {in: encodeFields("version", "1", "tee", `"tdx"`, "runtime_data", rd, "report", q(make([]byte, TDXQuoteMinSize-1))), wantErr: ErrMalformed},
		"long TDX quote":       {in: encodeFields("version", "1", "tee", `"tdx"`, "runtime_data", rd, "report", q(make([]byte, TDXQuoteMaxSize+1))), wantErr: ErrTooLarge},
		"TDX with cert table":  {in: encodeFields("version", "1", "tee", `"tdx"`, "runtime_data", rd, "report", q(make([]byte, TDXQuoteMinSize)), "cert_table", q([]byte{1})), wantErr: ErrMalformed},
		"large runtime data":   {in: encodeFields("version", "1", "tee", `"sev-snp"`, "runtime_data", q(make([]byte, MaxRuntimeDataSize+1)), "report", report), wantErr: ErrTooLarge},
		"large cert table":     {in: valid("cert_table", q(make([]byte, MaxCertTableSize+1))), wantErr: ErrTooLarge},
		"large TPM":            {in: valid("tpm", q(make([]byte, MaxTPMSize+1))), wantErr: ErrTooLarge},
		"large envelope":       {in: valid("tpm", `"`+strings.Repeat("A", MaxEnvelopeSize)+`"`), wantErr: ErrTooLarge},
		"padded base64":        {in: valid("tpm", `"AA=="`), wantErr: ErrMalformed},
		"standard base64":      {in: valid("tpm", `"+/+/"`), wantErr: ErrMalformed},
		"base64 newline":       {in: valid("tpm", `"AA\nAA"`), wantErr: ErrMalformed},
		"base64 bad tail":      {in: valid("tpm", `"AB"`), wantErr: ErrMalformed},
		"null cert table":      {in: valid("cert_table", "null"), wantErr: ErrMalformed},
		"number TPM":           {in: valid("tpm", "1"), wantErr: ErrMalformed},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := Decode(tt.in)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Decode() = %+v, %v; want error %v", got, err, tt.wantErr)
			}
			if !errors.Is(err, ErrMalformed) {
				t.Errorf("Decode() error %v does not match ErrMalformed", err)
			}
		})
	}
}

func TestEncodeErrors(t *testing.T) {
	tests := map[string]struct {
		mutate  func(e *Envelope)
		wantErr error
	}{
		"version":     {mutate: func(e *Envelope) { e.Version = 0 }, wantErr: ErrVersion},
		"kind":        {mutate: func(e *Envelope) { e.TEE = "sgx" }, wantErr: ErrUnknownKind},
		"no report":   {mutate: func(e *Envelope) { e.Report = nil }, wantErr: ErrMalformed},
		"report size": {mutate: func(e *Envelope) { e.Report = e.Report[1:] }, wantErr: ErrMalformed},
		"large TPM":   {mutate: func(e *Envelope) { e.TPM = make([]byte, MaxTPMSize+1) }, wantErr: ErrTooLarge},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			e := testEnvelope()
			tt.mutate(e)
			if _, err := e.Encode(); !errors.Is(err, tt.wantErr) {
				t.Errorf("Encode() error = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func TestB64(t *testing.T) {
	for _, in := range [][]byte{nil, {0}, {0xfb, 0xff}, []byte("hello world")} {
		b, err := json.Marshal(B64(in))
		if err != nil {
			t.Fatal(err)
		}
		var got B64
		if err := json.Unmarshal(b, &got); err != nil || !bytes.Equal(got, in) {
			t.Errorf("B64 round trip of %x via %s = %x, %v", in, b, got, err)
		}
	}
	var got B64
	if err := json.Unmarshal([]byte(`"AA=="`), &got); err == nil {
		t.Error("B64 accepted padding")
	}
}
