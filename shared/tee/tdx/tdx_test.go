package tdx

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"math/big"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata")

// Recorded, Intel-signed quotes from go-tdx-guest's testing/testdata (see
// testdata/README.md).
var (
	// sprQuote is a quote from a Sapphire Rapids platform; go-tdx-guest's
	// own tests verify it offline at 2023-07-01.
	//go:embed testdata/tdx_prod_quote_SPR_E4.dat
	sprQuote []byte
	// cosQuote is a Container-Optimized OS guest's quote on Google Cloud;
	// its PCK certificate is valid from 2024-07-02 to 2031-07-02.
	//go:embed testdata/cos-113-tdx-quote.dat
	cosQuote []byte
)

var (
	sprNow = time.Date(2023, time.July, 1, 1, 0, 0, 0, time.UTC)
	cosNow = time.Date(2025, time.January, 1, 0, 0, 0, 0, time.UTC)
)

// Offsets in a version 4 quote: 48-byte header, 584-byte TD quote body,
// 4-byte signed data size, then the signed data.
const (
	offTDAttributes = 0x30 + 0x78
	offMRTD         = 0x30 + 0x88
	offRTMR2        = 0x30 + 0x148 + 2*48
	offReportData   = 0x30 + 0x208
	offSignature    = 0x27c
	offAttestKey    = offSignature + 64
	offQEReport     = offAttestKey + 64 + 6
	offQEReportData = offQEReport + 0x140
	offQEReportSig  = offQEReport + 0x180
	offQEAuthSize   = offQEReportSig + 64
)

func at(t time.Time) func() time.Time { return func() time.Time { return t } }

// flip returns a copy of q with the byte at off XORed with mask.
func flip(q []byte, off int, mask byte) []byte {
	out := bytes.Clone(q)
	out[off] ^= mask
	return out
}

// sprClaims are the claims of sprQuote, verified once.
func sprClaims(t testing.TB) *Claims {
	t.Helper()
	c, err := Verify(sprQuote, Options{Now: at(sprNow)})
	if err != nil {
		t.Fatalf("Verify(sprQuote) = %v", err)
	}
	return c
}

func TestVerifyRecordedQuotes(t *testing.T) {
	tests := map[string]struct {
		quote       []byte
		now         time.Time
		wantMRTD    string
		wantAttrs   TDAttributes
		wantFMSPC   string
		wantTCBSVN  string
		wantXFAM    string
		wantRTMR0   string
		wantRepData string
	}{
		"sapphire rapids": {
			quote:       sprQuote,
			now:         sprNow,
			wantMRTD:    "6363b8043668a3ad953278e10389574d326c6749fb78aa810ecd9336923db86f22fc00b8dcd404bc10d5e119d7215cbb",
			wantAttrs:   TDAttributes{Raw: HexBytes{0, 0, 0, 0x40, 0, 0, 0, 0}, PKS: true},
			wantFMSPC:   "50806f000000",
			wantTCBSVN:  "03000400000000000000000000000000",
			wantXFAM:    "e71a060000000000",
			wantRTMR0:   "2927da70461cd63266f43230cc1849c03ef25ebe490062a801d8fcc80af42976823adf08f833c1e50b51779c6593f32a",
			wantRepData: "6c62dec1b8191749a31dab490be532a35944dea47caef1f980863993d9899545eb7406a38d1eed313b987a467dacead6f0c87a6d766c66f6f29f8acb281f1113",
		},
		"google cloud cos-113": {
			quote:       cosQuote,
			now:         cosNow,
			wantMRTD:    "dae67181d3d65e073ad8f95b7907d5e927bfe9761c9ff3e9b89734a45d8954dba41394c7717cb2735396c1d04231f94a",
			wantAttrs:   TDAttributes{Raw: HexBytes{0, 0, 0, 0x10, 0, 0, 0, 0}, SEPTVEDisable: true},
			wantFMSPC:   "00806f050000",
			wantTCBSVN:  "04010700000000000000000000000000",
			wantXFAM:    "e700060000000000",
			wantRTMR0:   "3fa2f61f395b7f5feefb4ec2df61297f109ad8abcd6410c1b7df60f21f37b19297fc35e544039c7e1edece752afd17f6",
			wantRepData: "00000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			c, err := Verify(tc.quote, Options{Now: at(tc.now)})
			if err != nil {
				t.Fatalf("Verify() = %v, want nil", err)
			}
			if got := c.MRTD.String(); got != tc.wantMRTD {
				t.Errorf("MRTD = %s, want %s", got, tc.wantMRTD)
			}
			if !reflect.DeepEqual(c.TDAttributes, tc.wantAttrs) {
				t.Errorf("TDAttributes = %+v, want %+v", c.TDAttributes, tc.wantAttrs)
			}
			if got := c.FMSPC.String(); got != tc.wantFMSPC {
				t.Errorf("FMSPC = %s, want %s", got, tc.wantFMSPC)
			}
			if got := c.TEETCBSVN.String(); got != tc.wantTCBSVN {
				t.Errorf("TEETCBSVN = %s, want %s", got, tc.wantTCBSVN)
			}
			if got := c.XFAM.String(); got != tc.wantXFAM {
				t.Errorf("XFAM = %s, want %s", got, tc.wantXFAM)
			}
			if got := c.ReportData.String(); got != tc.wantRepData {
				t.Errorf("ReportData = %s, want %s", got, tc.wantRepData)
			}
			if c.TCBStatus != TCBStatusUnknown {
				t.Errorf("TCBStatus = %q, want %q (no collateral)", c.TCBStatus, TCBStatusUnknown)
			}
			if c.QuoteVersion != 4 {
				t.Errorf("QuoteVersion = %d, want 4", c.QuoteVersion)
			}
			if got, want := c.QEVendorID.String(), "939a7233f79c4ca9940a0db3957f0607"; got != want {
				t.Errorf("QEVendorID = %s, want Intel's %s", got, want)
			}
			for i, r := range c.RTMRs {
				if len(r) != 48 {
					t.Errorf("RTMR%d has %d bytes, want 48", i, len(r))
				}
			}
			// RTMR0 is read from the TD report body at offset 0x148 of
			// the quote body (after the 48-byte header); the values were
			// read from the raw files with xxd.
			if got := c.RTMRs[0].String(); got != tc.wantRTMR0 {
				t.Errorf("RTMR0 = %s, want %s", got, tc.wantRTMR0)
			}

			// Every field pinned to its own value still verifies.
			var rtmrs [4][]byte
			for i := range rtmrs {
				rtmrs[i] = c.RTMRs[i]
			}
			if _, err := Verify(tc.quote, Options{
				Now: at(tc.now), ReportData: c.ReportData, MRTD: c.MRTD, RTMRs: rtmrs,
				MRSEAM: c.MRSEAM, XFAM: c.XFAM, MinimumTEETCBSVN: c.TEETCBSVN,
			}); err != nil {
				t.Errorf("Verify() with every field pinned to the quote's values = %v, want nil", err)
			}
		})
	}
}

func TestClaimsGolden(t *testing.T) {
	got, err := json.MarshalIndent(sprClaims(t), "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, '\n')
	path := filepath.Join("testdata", "spr_claims.golden.json")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading golden file (run with -update to create it): %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("claims JSON differs from %s (run with -update if intended):\n%s", path, got)
	}
	var back Claims
	if err := json.Unmarshal(got, &back); err != nil {
		t.Fatalf("claims JSON does not decode: %v", err)
	}
	if !bytes.Equal(back.MRTD, sprClaims(t).MRTD) {
		t.Errorf("MRTD after a JSON round trip = %x", back.MRTD)
	}
}

// testRoot returns a pool with a freshly made self-signed CA that signed
// nothing in the recorded quotes.
func testRoot(t *testing.T) *x509.CertPool {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "Intel SGX Root CA"},
		NotBefore:             time.Date(2018, 1, 1, 0, 0, 0, 0, time.UTC),
		NotAfter:              time.Date(2050, 1, 1, 0, 0, 0, 0, time.UTC),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return pool
}

// tamperPCK changes one base64 character inside the PCK leaf certificate.
func tamperPCK(t *testing.T, q []byte) []byte {
	t.Helper()
	i := bytes.Index(q, []byte("-----BEGIN CERTIFICATE-----"))
	if i < 0 {
		t.Fatal("no PEM certificate in the quote")
	}
	out := bytes.Clone(q)
	off := i + len("-----BEGIN CERTIFICATE-----\n") + 300
	if out[off] == 'A' {
		out[off] = 'B'
	} else {
		out[off] = 'A'
	}
	return out
}

func TestVerifyRejects(t *testing.T) {
	good := sprClaims(t)
	wrong48 := bytes.Repeat([]byte{0x5a}, 48)
	wrongRTMR2 := bytes.Clone(good.RTMRs[2])
	wrongRTMR2[0] ^= 1
	higherSVN := bytes.Clone(good.TEETCBSVN)
	higherSVN[0]++
	truncated := func(n int) []byte { return bytes.Clone(sprQuote[:n]) }
	version5 := bytes.Clone(sprQuote)
	version5[0] = 5
	// go-tdx-guest's abi package slices past the end on this one (found by
	// FuzzVerify); Verify must recover and report it.
	hugeAuthData := bytes.Clone(sprQuote)
	hugeAuthData[offQEAuthSize], hugeAuthData[offQEAuthSize+1] = 0xff, 0xff
	sgxTEE := bytes.Clone(sprQuote)
	sgxTEE[4] = 0 // TEE type 0x81 (TDX) -> 0x00 (SGX)

	tests := map[string]struct {
		quote   []byte
		opts    Options
		wantErr []error // every one must be present
		notErr  []error // none may be present
	}{
		"signature flipped": {
			quote: flip(sprQuote, offSignature+5, 0x01), opts: Options{Now: at(sprNow)},
			wantErr: []error{ErrSignature}, notErr: []error{ErrChain, ErrMRTD},
		},
		"attestation key flipped": {
			quote: flip(sprQuote, offAttestKey+3, 0x01), opts: Options{Now: at(sprNow)},
			wantErr: []error{ErrSignature}, notErr: []error{ErrChain},
		},
		"MRTD flipped": {
			quote: flip(sprQuote, offMRTD+7, 0x80), opts: Options{Now: at(sprNow)},
			wantErr: []error{ErrSignature}, notErr: []error{ErrMRTD},
		},
		"MRTD flipped and pinned": {
			quote: flip(sprQuote, offMRTD+7, 0x80), opts: Options{Now: at(sprNow), MRTD: good.MRTD},
			wantErr: []error{ErrSignature, ErrMRTD},
		},
		"REPORT_DATA flipped": {
			quote: flip(sprQuote, offReportData, 0x01), opts: Options{Now: at(sprNow)},
			wantErr: []error{ErrSignature}, notErr: []error{ErrReportData},
		},
		"REPORT_DATA flipped and pinned": {
			quote: flip(sprQuote, offReportData, 0x01), opts: Options{Now: at(sprNow), ReportData: good.ReportData},
			wantErr: []error{ErrSignature, ErrReportData},
		},
		"RTMR2 flipped and pinned": {
			quote: flip(sprQuote, offRTMR2+1, 0x10), opts: Options{Now: at(sprNow), RTMRs: [4][]byte{2: good.RTMRs[2]}},
			wantErr: []error{ErrSignature, ErrRTMR},
		},
		"QE report flipped": {
			quote: flip(sprQuote, offQEReport+0x40, 0x01), opts: Options{Now: at(sprNow)},
			wantErr: []error{ErrSignature}, notErr: []error{ErrChain},
		},
		"QE report data flipped": {
			quote: flip(sprQuote, offQEReportData, 0x01), opts: Options{Now: at(sprNow)},
			wantErr: []error{ErrSignature}, notErr: []error{ErrChain},
		},
		"QE report signature flipped": {
			quote: flip(sprQuote, offQEReportSig+9, 0x01), opts: Options{Now: at(sprNow)},
			wantErr: []error{ErrSignature}, notErr: []error{ErrChain},
		},
		"PCK certificate tampered": {
			quote: tamperPCK(t, sprQuote), opts: Options{Now: at(sprNow)},
			wantErr: []error{ErrChain}, notErr: []error{ErrSignature},
		},
		"debug bit set": {
			quote: flip(sprQuote, offTDAttributes, 0x01), opts: Options{Now: at(sprNow)},
			wantErr: []error{ErrSignature, ErrDebug}, notErr: []error{ErrTDAttributes},
		},
		"debug bit set, debug allowed": {
			quote: flip(sprQuote, offTDAttributes, 0x01), opts: Options{Now: at(sprNow), AllowDebug: true},
			wantErr: []error{ErrSignature}, notErr: []error{ErrDebug},
		},
		"migratable bit set": {
			quote: flip(sprQuote, offTDAttributes+3, 0x20), opts: Options{Now: at(sprNow)},
			wantErr: []error{ErrSignature, ErrTDAttributes}, notErr: []error{ErrDebug},
		},
		"truncated to nothing": {
			quote: nil, opts: Options{Now: at(sprNow)}, wantErr: []error{ErrMalformed},
		},
		"truncated to 1 byte": {
			quote: truncated(1), opts: Options{Now: at(sprNow)}, wantErr: []error{ErrMalformed},
		},
		"truncated in the body": {
			quote: truncated(0x200), opts: Options{Now: at(sprNow)}, wantErr: []error{ErrMalformed},
		},
		"truncated in the QE report": {
			quote: truncated(offQEReport + 0x20), opts: Options{Now: at(sprNow)}, wantErr: []error{ErrMalformed},
		},
		"truncated into the signed data": {
			quote: truncated(len(sprQuote) - 40), opts: Options{Now: at(sprNow)}, wantErr: []error{ErrMalformed},
		},
		"QE auth data size past the end (go-tdx-guest panics)": {
			quote: hugeAuthData, opts: Options{Now: at(sprNow)}, wantErr: []error{ErrMalformed},
		},
		"version 5": {
			quote: version5, opts: Options{Now: at(sprNow)}, wantErr: []error{ErrMalformed},
		},
		"SGX TEE type": {
			quote: sgxTEE, opts: Options{Now: at(sprNow)}, wantErr: []error{ErrMalformed},
		},
		"untrusted root": {
			quote: sprQuote, opts: Options{Now: at(sprNow), TrustedRoots: testRoot(t)},
			wantErr: []error{ErrChain}, notErr: []error{ErrSignature},
		},
		"PCK certificate expired": {
			quote: sprQuote, opts: Options{Now: at(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))},
			wantErr: []error{ErrChain},
		},
		"PCK certificate not yet valid": {
			quote: cosQuote, opts: Options{Now: at(sprNow)},
			wantErr: []error{ErrChain},
		},
		"MRTD mismatch": {
			quote: sprQuote, opts: Options{Now: at(sprNow), MRTD: wrong48},
			wantErr: []error{ErrMRTD}, notErr: []error{ErrSignature, ErrChain, ErrRTMR},
		},
		"MRTD pinned with a wrong length": {
			quote: sprQuote, opts: Options{Now: at(sprNow), MRTD: good.MRTD[:32]},
			wantErr: []error{ErrMRTD},
		},
		"MRTD pinned empty, not nil": {
			quote: sprQuote, opts: Options{Now: at(sprNow), MRTD: []byte{}},
			wantErr: []error{ErrMRTD},
		},
		"RTMR2 mismatch": {
			quote: sprQuote, opts: Options{Now: at(sprNow), RTMRs: [4][]byte{0: good.RTMRs[0], 2: wrongRTMR2}},
			wantErr: []error{ErrRTMR}, notErr: []error{ErrMRTD, ErrSignature},
		},
		"RTMR3 mismatch": {
			quote: sprQuote, opts: Options{Now: at(sprNow), RTMRs: [4][]byte{3: wrong48}},
			wantErr: []error{ErrRTMR},
		},
		"REPORT_DATA mismatch": {
			quote: sprQuote, opts: Options{Now: at(sprNow), ReportData: make([]byte, 64)},
			wantErr: []error{ErrReportData}, notErr: []error{ErrSignature},
		},
		"MRSEAM mismatch": {
			quote: sprQuote, opts: Options{Now: at(sprNow), MRSEAM: wrong48},
			wantErr: []error{ErrMRSEAM},
		},
		"XFAM mismatch": {
			quote: sprQuote, opts: Options{Now: at(sprNow), XFAM: []byte{0xe7, 0, 0, 0, 0, 0, 0, 0}},
			wantErr: []error{ErrXFAM},
		},
		"TEE_TCB_SVN below minimum": {
			quote: sprQuote, opts: Options{Now: at(sprNow), MinimumTEETCBSVN: higherSVN},
			wantErr: []error{ErrTCB},
		},
		"TEE_TCB_SVN minimum with a wrong length": {
			quote: sprQuote, opts: Options{Now: at(sprNow), MinimumTEETCBSVN: []byte{1}},
			wantErr: []error{ErrTCB},
		},
		"up to date required offline": {
			quote: sprQuote, opts: Options{Now: at(sprNow), RequireUpToDate: true},
			wantErr: []error{ErrTCB}, notErr: []error{ErrCollateral},
		},
		"every pinned value wrong": {
			quote: sprQuote,
			opts: Options{
				Now: at(sprNow), ReportData: make([]byte, 64), MRTD: wrong48, RTMRs: [4][]byte{1: wrong48},
				MRSEAM: wrong48, XFAM: make([]byte, 8), MinimumTEETCBSVN: higherSVN, RequireUpToDate: true,
			},
			wantErr: []error{ErrReportData, ErrMRTD, ErrRTMR, ErrMRSEAM, ErrXFAM, ErrTCB},
			notErr:  []error{ErrSignature, ErrChain, ErrDebug},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			c, err := Verify(tc.quote, tc.opts)
			if err == nil {
				t.Fatal("Verify() = nil error, want one")
			}
			if c != nil {
				t.Errorf("Verify() returned claims with an error")
			}
			for _, want := range tc.wantErr {
				if !errors.Is(err, want) {
					t.Errorf("Verify() = %v\nwant it to wrap %v", err, want)
				}
			}
			for _, not := range tc.notErr {
				if errors.Is(err, not) {
					t.Errorf("Verify() = %v\nwant it not to wrap %v", err, not)
				}
			}
		})
	}
}

func TestValidateClaims(t *testing.T) {
	good := sprClaims(t)
	withAttrs := func(v uint64) *Claims {
		c := *good
		raw := make(HexBytes, 8)
		for i := range raw {
			raw[i] = byte(v >> (8 * i))
		}
		c.TDAttributes = decodeTDAttributes(raw)
		return &c
	}
	withXFAM := func(raw ...byte) *Claims {
		c := *good
		c.XFAM = raw
		return &c
	}
	tests := map[string]struct {
		claims  *Claims
		opts    Options
		wantErr []error
	}{
		"recorded quote":                {claims: good},
		"PKS, SEPT_VE_DISABLE, PERFMON": {claims: withAttrs(attrPKS | attrSEPTVEDisable | attrPerfmon)},
		"debug":                         {claims: withAttrs(attrDebug), wantErr: []error{ErrDebug}},
		"debug with PKS":                {claims: withAttrs(attrDebug | attrPKS), wantErr: []error{ErrDebug}},
		"debug allowed":                 {claims: withAttrs(attrDebug), opts: Options{AllowDebug: true}},
		"debug and key locker": {
			claims: withAttrs(attrDebug | attrKL), wantErr: []error{ErrDebug, ErrTDAttributes},
		},
		"migratable":       {claims: withAttrs(attrMigratable), wantErr: []error{ErrTDAttributes}},
		"reserved bit 1":   {claims: withAttrs(1 << 1), wantErr: []error{ErrTDAttributes}},
		"reserved bit 40":  {claims: withAttrs(1 << 40), wantErr: []error{ErrTDAttributes}},
		"short attributes": {claims: func() *Claims { c := *good; c.TDAttributes.Raw = HexBytes{0}; return &c }(), wantErr: []error{ErrTDAttributes}},
		"decoded debug flag cleared by hand": {
			claims:  func() *Claims { c := withAttrs(attrDebug); c.TDAttributes.Debug = false; return c }(),
			wantErr: []error{ErrDebug},
		},
		"XFAM without x87": {claims: withXFAM(0xe6, 0x1a, 0x06, 0, 0, 0, 0, 0), wantErr: []error{ErrXFAM}},
		"XFAM MPX bit 3":   {claims: withXFAM(0xef, 0x1a, 0x06, 0, 0, 0, 0, 0), wantErr: []error{ErrXFAM}},
		"XFAM short":       {claims: withXFAM(0xe7), wantErr: []error{ErrXFAM}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			err := validateClaims(tc.claims, &tc.opts)
			if len(tc.wantErr) == 0 {
				if err != nil {
					t.Fatalf("validateClaims() = %v, want nil", err)
				}
				return
			}
			for _, want := range tc.wantErr {
				if !errors.Is(err, want) {
					t.Errorf("validateClaims() = %v, want it to wrap %v", err, want)
				}
			}
		})
	}
}

func TestEmbeddedRootIsIntels(t *testing.T) {
	block, _ := pem.Decode(intelSGXRootCA)
	if block == nil {
		t.Fatal("no PEM block")
	}
	sum := sha256.Sum256(block.Bytes)
	if got, want := hex.EncodeToString(sum[:]), "44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3"; got != want {
		t.Errorf("embedded root fingerprint = %s, want Intel SGX Root CA %s", got, want)
	}
}

// TestConcurrentVerify shares one Options between goroutines; with -race it
// shows that nothing in Options (or behind it) is mutated.
func TestConcurrentVerify(t *testing.T) {
	opts := Options{Now: at(sprNow), MRTD: sprClaims(t).MRTD}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			if _, err := Verify(sprQuote, opts); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestHexBytesText(t *testing.T) {
	var h HexBytes
	if err := h.UnmarshalText([]byte("zz")); err == nil {
		t.Error("UnmarshalText(zz) = nil, want an error")
	}
	if err := h.UnmarshalText([]byte("00ff")); err != nil || !bytes.Equal(h, []byte{0, 0xff}) {
		t.Errorf("UnmarshalText(00ff) = %x, %v", []byte(h), err)
	}
}

func BenchmarkVerify(b *testing.B) {
	opts := Options{Now: at(sprNow)}
	for b.Loop() {
		if _, err := Verify(sprQuote, opts); err != nil {
			b.Fatal(err)
		}
	}
}
