package evidence

import (
	"reflect"
	"strings"
	"testing"
)

// TestDecodeFastSubset: inputs the general path accepts but the fast path
// leaves to it (escapes, numbers it does not read, whitespace it does read),
// and inputs the fast path must decline because they are errors.
func TestDecodeFastSubset(t *testing.T) {
	q := func(b []byte) string { return `"` + b64(b) + `"` }
	rd, report := q([]byte("rd")), q(make([]byte, SNPReportSize))
	tests := map[string]struct {
		in       string
		wantFast bool
		wantErr  bool
	}{
		"plain":                 {in: string(encodeFields("version", "1", "tee", `"sev-snp"`, "runtime_data", rd, "report", report)), wantFast: true},
		"whitespace":            {in: " {\n\t\"version\" : 1 ,\r\n \"tee\":\"sev-snp\", \"runtime_data\":" + rd + ",\"report\":" + report + " } \n", wantFast: true},
		"any order":             {in: string(encodeFields("report", report, "tpm", `"AAAA"`, "runtime_data", rd, "tee", `"sev-snp"`, "version", "1")), wantFast: true},
		"empty cert table":      {in: string(encodeFields("version", "1", "tee", `"sev-snp"`, "runtime_data", rd, "report", report, "cert_table", `""`)), wantFast: true},
		"escaped base64":        {in: string(encodeFields("version", "1", "tee", `"sev-snp"`, "runtime_data", `"\u0041A"`, "report", report))},
		"escaped name":          {in: string(encodeFields("versio\\u006e", "1", "tee", `"sev-snp"`, "runtime_data", rd, "report", report))},
		"escaped kind":          {in: string(encodeFields("version", "1", "tee", `"sev\u002dsnp"`, "runtime_data", rd, "report", report))},
		"version exponent":      {in: string(encodeFields("version", "1e0", "tee", `"sev-snp"`, "runtime_data", rd, "report", report)), wantErr: true},
		"version leading zero":  {in: string(encodeFields("version", "01", "tee", `"sev-snp"`, "runtime_data", rd, "report", report)), wantErr: true},
		"version huge":          {in: string(encodeFields("version", "1"+strings.Repeat("0", 30), "tee", `"sev-snp"`, "runtime_data", rd, "report", report)), wantErr: true},
		"version 2":             {in: string(encodeFields("version", "2", "tee", `"sev-snp"`, "runtime_data", rd, "report", report)), wantErr: true},
		"duplicate":             {in: string(encodeFields("version", "1", "version", "1", "tee", `"sev-snp"`, "runtime_data", rd, "report", report)), wantErr: true},
		"upper case":            {in: string(encodeFields("Version", "1", "tee", `"sev-snp"`, "runtime_data", rd, "report", report)), wantErr: true},
		"trailing comma":        {in: string(encodeFields("version", "1", "tee", `"sev-snp"`, "runtime_data", rd, "report", report+",")), wantErr: true},
		"trailing data":         {in: string(encodeFields("version", "1", "tee", `"sev-snp"`, "runtime_data", rd, "report", report)) + "{}", wantErr: true},
		"newline in base64":     {in: string(encodeFields("version", "1", "tee", `"sev-snp"`, "runtime_data", rd, "report", report, "tpm", "\"AA\nAA\"")), wantErr: true},
		"escaped newline":       {in: string(encodeFields("version", "1", "tee", `"sev-snp"`, "runtime_data", rd, "report", report, "tpm", `"AA\nAA"`)), wantErr: true},
		"carriage return":       {in: string(encodeFields("version", "1", "tee", `"sev-snp"`, "runtime_data", rd, "report", report, "tpm", "\"AA\rAA\"")), wantErr: true},
		"tab in base64":         {in: string(encodeFields("version", "1", "tee", `"sev-snp"`, "runtime_data", rd, "report", report, "tpm", "\"AA\tAA\"")), wantErr: true},
		"padding":               {in: string(encodeFields("version", "1", "tee", `"sev-snp"`, "runtime_data", rd, "report", report, "tpm", `"AA=="`)), wantErr: true},
		"non-canonical":         {in: string(encodeFields("version", "1", "tee", `"sev-snp"`, "runtime_data", rd, "report", report, "tpm", `"AB"`)), wantErr: true},
		"null":                  {in: string(encodeFields("version", "1", "tee", `"sev-snp"`, "runtime_data", rd, "report", report, "tpm", `null`)), wantErr: true},
		"unknown kind":          {in: string(encodeFields("version", "1", "tee", `"sgx"`, "runtime_data", rd, "report", report)), wantErr: true},
		"non-ASCII kind":        {in: string(encodeFields("version", "1", "tee", "\"sev-snp\xff\"", "runtime_data", rd, "report", report)), wantErr: true},
		"unterminated string":   {in: `{"version":1,"tee":"sev-snp`, wantErr: true},
		"missing closing brace": {in: strings.TrimSuffix(string(encodeFields("version", "1", "tee", `"sev-snp"`, "runtime_data", rd, "report", report)), "}"), wantErr: true},
		"empty object":          {in: `{}`, wantErr: true},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			fast, ok := decodeFast([]byte(tt.in))
			if ok != tt.wantFast {
				t.Errorf("decodeFast ok = %v, want %v", ok, tt.wantFast)
			}
			if ok {
				general, err := decodeGeneral([]byte(tt.in))
				if err != nil || !reflect.DeepEqual(fast, general) {
					t.Errorf("decodeFast = %+v, decodeGeneral = %+v, %v", fast, general, err)
				}
			}
			if _, err := Decode([]byte(tt.in)); (err != nil) != tt.wantErr {
				t.Errorf("Decode() error = %v, want error %v", err, tt.wantErr)
			}
		})
	}
}

// FuzzDecodeFast: whatever the fast path accepts, the general path accepts
// with the same result.
func FuzzDecodeFast(f *testing.F) {
	if b, err := testEnvelope().Encode(); err == nil {
		f.Add(b)
	}
	f.Add([]byte(`{"version":1,"tee":"tdx","runtime_data":"AA","report":"AA"}`))
	f.Add([]byte(` {"version" : 1 , "tee":"sev-snp","runtime_data":"AA","report":"AA","tpm":"","cert_table":"AAAA"} `))
	f.Add([]byte(`{"version":1,"tee":"sev-snp","runtime_data":"A\u0041","report":"AA"}`))
	f.Fuzz(func(t *testing.T, in []byte) {
		fast, ok := decodeFast(in)
		if !ok {
			return
		}
		general, err := decodeGeneral(in)
		if err != nil {
			t.Fatalf("decodeFast accepted what decodeGeneral rejects (%v): %q", err, in)
		}
		if !reflect.DeepEqual(fast, general) {
			t.Fatalf("decodeFast = %+v, decodeGeneral = %+v", fast, general)
		}
	})
}
