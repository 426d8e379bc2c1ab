package snp_test

import (
	"bytes"
	_ "embed"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-sev-guest/abi"
	"github.com/google/go-sev-guest/kds"
	"github.com/google/go-sev-guest/verify/trust"
	"github.com/google/uuid"

	"github.com/confidant-cvm/confidant/shared/tee/snp"
	"github.com/confidant-cvm/confidant/shared/tee/snp/sim"
)

// A real Milan report and its VCEK, copied from go-sev-guest v0.15.0
// verify/testdata. Its guest policy is 0xb0000: SMT and debug allowed.
var (
	//go:embed testdata/attestation.bin
	milanReport []byte
	//go:embed testdata/vcek.testcer
	milanVCEK []byte
)

// milanNow lies within the VCEK's validity (2022-09-24 to 2029-09-24).
func milanNow() time.Time { return time.Date(2024, 6, 1, 0, 0, 0, 0, time.UTC) }

// Offsets into the report (SEV-SNP ABI, ATTESTATION_REPORT).
const (
	offVersion     = 0x00
	offPolicy      = 0x08
	offVMPL        = 0x30
	offCurrentTCB  = 0x38
	offSignerInfo  = 0x48
	offReserved    = 0x4C
	offReportData  = 0x50
	offMeasurement = 0x90
	offReportedTCB = 0x180
	offChipID      = 0x1A0
	offCommitted   = 0x1E0
	offCurrentFW   = 0x1E8 // build, minor, major
	offCommittedFW = 0x1EC // build, minor, major
	offLaunchTCB   = 0x1F0
	offPlatform    = 0x40
	offSignature   = 0x2A0
)

func certTable(t testing.TB, entries map[string][]byte) []byte {
	t.Helper()
	var table abi.CertTable
	for guid, der := range entries {
		table.Entries = append(table.Entries, abi.CertTableEntry{GUID: uuid.MustParse(guid), RawCert: der})
	}
	return table.Marshal()
}

func milanTable(t testing.TB) []byte {
	return certTable(t, map[string][]byte{abi.VcekGUID: milanVCEK})
}

// permissive accepts the recorded report's debug and SMT policy.
func permissive() snp.Options {
	return snp.Options{Now: milanNow, AllowDebug: true, AllowSMT: true}
}

func flip(b []byte, off int, mask byte) []byte {
	out := bytes.Clone(b)
	out[off] ^= mask
	return out
}

func TestVerifyMilan(t *testing.T) {
	claims, err := snp.Verify(milanReport, milanTable(t), permissive())
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if claims.Product != "Milan" || claims.Simulated || claims.Version != 2 || claims.SignerInfo.SigningKey != "vcek" {
		t.Errorf("claims = %+v, want a real Milan v2 VCEK report", claims)
	}
	if !claims.Policy.Debug || !claims.Policy.SMT || claims.Policy.Value != 0xb0000 || claims.Policy.MigrationAgent {
		t.Errorf("claims.Policy = %+v, want 0xb0000 decoded", claims.Policy)
	}
	if !strings.HasPrefix(claims.ReportData, "0102030405000000") || len(claims.ReportData) != 128 {
		t.Errorf("claims.ReportData = %s", claims.ReportData)
	}
	if want := hex.EncodeToString(milanReport[offMeasurement : offMeasurement+48]); claims.Measurement != want {
		t.Errorf("claims.Measurement = %s, want %s", claims.Measurement, want)
	}
	wantTCB := snp.TCB{Value: 0x4405000000000002, Bootloader: 2, TEE: 0, SNP: 5, Microcode: 68}
	if claims.ReportedTCB != wantTCB || claims.CurrentTCB != wantTCB {
		t.Errorf("claims TCBs = %+v %+v, want %+v", claims.ReportedTCB, claims.CurrentTCB, wantTCB)
	}
	if !claims.PlatformInfo.SMTEnabled || claims.CurrentFirmware != (snp.Firmware{Major: 1, Minor: 49, Build: 3}) {
		t.Errorf("claims = %+v", claims)
	}
}

func TestVerifyMilanDefaultOptionsRejectDebug(t *testing.T) {
	_, err := snp.Verify(milanReport, milanTable(t), snp.Options{Now: milanNow})
	if !errors.Is(err, snp.ErrDebug) {
		t.Errorf("Verify(default options) error = %v, want ErrDebug", err)
	}
	if !errors.Is(err, snp.ErrSMT) {
		t.Errorf("Verify(default options) error = %v, want ErrSMT as well", err)
	}
	_, err = snp.Verify(milanReport, milanTable(t), snp.Options{Now: milanNow, AllowSMT: true})
	if !errors.Is(err, snp.ErrDebug) || errors.Is(err, snp.ErrSMT) {
		t.Errorf("Verify(AllowSMT) error = %v, want only ErrDebug", err)
	}
}

func TestVerifyMilanTampered(t *testing.T) {
	tests := map[string]struct {
		report  []byte
		wantErr error
	}{
		"signature r":       {report: flip(milanReport, offSignature, 0x01), wantErr: snp.ErrSignature},
		"signature s":       {report: flip(milanReport, offSignature+0x48, 0x80), wantErr: snp.ErrSignature},
		"measurement":       {report: flip(milanReport, offMeasurement+5, 0x01), wantErr: snp.ErrSignature},
		"report data":       {report: flip(milanReport, offReportData, 0x01), wantErr: snp.ErrSignature},
		"policy debug bit":  {report: flip(milanReport, offPolicy+2, 0x08), wantErr: snp.ErrSignature},
		"policy reserved":   {report: flip(milanReport, offPolicy+2, 0x02), wantErr: snp.ErrMalformed},
		"reported TCB":      {report: flip(milanReport, offReportedTCB, 0x01), wantErr: snp.ErrSignature},
		"current TCB":       {report: flip(milanReport, offCurrentTCB+7, 0x01), wantErr: snp.ErrSignature},
		"VMPL":              {report: flip(milanReport, offVMPL, 0x01), wantErr: snp.ErrSignature},
		"chip ID":           {report: flip(milanReport, offChipID, 0x01), wantErr: snp.ErrSignature},
		"version 3":         {report: flip(milanReport, offVersion, 0x01), wantErr: snp.ErrSignature},
		"version 255":       {report: flip(milanReport, offVersion, 0xfd), wantErr: snp.ErrReportVersion},
		"version 0":         {report: flip(milanReport, offVersion, 0x02), wantErr: snp.ErrReportVersion},
		"signed by VLEK":    {report: flip(milanReport, offSignerInfo, 0x04), wantErr: snp.ErrChain},
		"unsigned":          {report: flip(milanReport, offSignerInfo, 0x1c), wantErr: snp.ErrSignature},
		"reserved nonzero":  {report: flip(milanReport, offReserved, 0x01), wantErr: snp.ErrMalformed},
		"signature algo":    {report: flip(milanReport, 0x34, 0x02), wantErr: snp.ErrSignature},
		"truncated":         {report: milanReport[:abi.ReportSize-1], wantErr: snp.ErrMalformed},
		"too long":          {report: append(bytes.Clone(milanReport), 0), wantErr: snp.ErrMalformed},
		"empty":             {report: nil, wantErr: snp.ErrMalformed},
		"signature padding": {report: flip(milanReport, offSignature+0x90, 0x01), wantErr: snp.ErrMalformed},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			claims, err := snp.Verify(tt.report, milanTable(t), permissive())
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Verify() = %+v, %v; want error %v", claims, err, tt.wantErr)
			}
			if strings.Contains(err.Error(), "panic") {
				t.Errorf("Verify() recovered from a panic: %v", err)
			}
		})
	}
}

func TestVerifyMilanOptions(t *testing.T) {
	measurement := bytes.Clone(milanReport[offMeasurement : offMeasurement+48])
	reportData := bytes.Clone(milanReport[offReportData : offReportData+64])
	otherData := bytes.Clone(reportData)
	otherData[63] ^= 1
	vmpl1 := 1
	vmpl0 := 0
	badVMPL := 4
	tests := map[string]struct {
		mutate  func(o *snp.Options)
		wantErr error
	}{
		"baseline":             {mutate: func(*snp.Options) {}},
		"report data matches":  {mutate: func(o *snp.Options) { o.ReportData = reportData }},
		"report data differs":  {mutate: func(o *snp.Options) { o.ReportData = otherData }, wantErr: snp.ErrReportData},
		"measurement matches":  {mutate: func(o *snp.Options) { o.Measurements = [][]byte{make([]byte, 48), measurement} }},
		"measurement differs":  {mutate: func(o *snp.Options) { o.Measurements = [][]byte{make([]byte, 48)} }, wantErr: snp.ErrMeasurement},
		"no measurement":       {mutate: func(o *snp.Options) { o.Measurements = [][]byte{} }, wantErr: snp.ErrMeasurement},
		"VMPL 0 explicit":      {mutate: func(o *snp.Options) { o.VMPL = &vmpl0 }},
		"VMPL 1 required":      {mutate: func(o *snp.Options) { o.VMPL = &vmpl1 }, wantErr: snp.ErrVMPL},
		"TCB minimum met":      {mutate: func(o *snp.Options) { o.MinimumTCB = kds.TCBParts{BlSpl: 2, SnpSpl: 5, UcodeSpl: 68} }},
		"TCB microcode low":    {mutate: func(o *snp.Options) { o.MinimumTCB = kds.TCBParts{UcodeSpl: 69} }, wantErr: snp.ErrTCBTooLow},
		"TCB snp low":          {mutate: func(o *snp.Options) { o.MinimumTCB = kds.TCBParts{SnpSpl: 6} }, wantErr: snp.ErrTCBTooLow},
		"version 3 required":   {mutate: func(o *snp.Options) { o.MinimumVersion = 3 }, wantErr: snp.ErrReportVersion},
		"product Milan":        {mutate: func(o *snp.Options) { o.Product = "Milan" }},
		"product Genoa":        {mutate: func(o *snp.Options) { o.Product = "Genoa" }, wantErr: snp.ErrChain},
		"no migration agent":   {mutate: func(o *snp.Options) { o.AllowMigrationAgent = false }},
		"debug refused":        {mutate: func(o *snp.Options) { o.AllowDebug = false }, wantErr: snp.ErrDebug},
		"SMT refused":          {mutate: func(o *snp.Options) { o.AllowSMT = false }, wantErr: snp.ErrSMT},
		"expired VCEK":         {mutate: func(o *snp.Options) { o.Now = func() time.Time { return time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC) } }, wantErr: snp.ErrChain},
		"VCEK not yet valid":   {mutate: func(o *snp.Options) { o.Now = func() time.Time { return time.Date(2021, 1, 1, 0, 0, 0, 0, time.UTC) } }, wantErr: snp.ErrChain},
		"bad report data size": {mutate: func(o *snp.Options) { o.ReportData = []byte{1} }, wantErr: snp.ErrMalformed},
		"bad measurement size": {mutate: func(o *snp.Options) { o.Measurements = [][]byte{{1}} }, wantErr: snp.ErrMalformed},
		"bad VMPL":             {mutate: func(o *snp.Options) { o.VMPL = &badVMPL }, wantErr: snp.ErrMalformed},
		"bad product":          {mutate: func(o *snp.Options) { o.Product = "Naples" }, wantErr: snp.ErrMalformed},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			opts := permissive()
			tt.mutate(&opts)
			_, err := snp.Verify(milanReport, milanTable(t), opts)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Fatalf("Verify() error = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func TestVerifyJoinsFailures(t *testing.T) {
	vmpl1 := 1
	_, err := snp.Verify(milanReport, milanTable(t), snp.Options{
		Now: milanNow, VMPL: &vmpl1, ReportData: make([]byte, 64), Measurements: [][]byte{},
		MinimumTCB: kds.TCBParts{UcodeSpl: 255},
	})
	for _, want := range []error{snp.ErrDebug, snp.ErrSMT, snp.ErrVMPL, snp.ErrReportData, snp.ErrMeasurement, snp.ErrTCBTooLow} {
		if !errors.Is(err, want) {
			t.Errorf("Verify() error = %v, want it to include %v", err, want)
		}
	}
}

func TestVerifyMilanCertTable(t *testing.T) {
	s := testSigner(t)
	overflow := milanTable(t)
	// First entry: offset 0xffffffff, length 2 wraps around in uint32.
	binary.LittleEndian.PutUint32(overflow[16:], 0xffffffff)
	binary.LittleEndian.PutUint32(overflow[20:], 2)
	tests := map[string]struct {
		table   []byte
		opts    func(o *snp.Options)
		wantErr error
	}{
		"empty table":        {table: nil, wantErr: snp.ErrChain},
		"only extras":        {table: certTable(t, map[string][]byte{abi.ExtraPlatformInfoGUID: {8, 0, 0, 0, 0, 0, 0, 0}}), wantErr: snp.ErrChain},
		"garbage":            {table: []byte("not a table"), wantErr: snp.ErrMalformed},
		"unterminated":       {table: milanTable(t)[:24], wantErr: snp.ErrMalformed},
		"offset overflow":    {table: overflow, wantErr: snp.ErrMalformed},
		"garbage VCEK":       {table: certTable(t, map[string][]byte{abi.VcekGUID: []byte("junk")}), wantErr: snp.ErrChain},
		"other chip's VCEK":  {table: s.CertTable(), wantErr: snp.ErrSignature},
		"truncated VCEK":     {table: certTable(t, map[string][]byte{abi.VcekGUID: milanVCEK[:100]}), wantErr: snp.ErrChain},
		"sim root for real":  {table: milanTable(t), opts: func(o *snp.Options) { o.SimRoot = s.RootCert() }, wantErr: snp.ErrChain},
		"sim root with ASK":  {table: withASK(t, s), opts: func(o *snp.Options) { o.SimRoot = s.RootCert() }, wantErr: snp.ErrChain},
		"oversized table":    {table: make([]byte, snp.MaxCertTableSize+1), wantErr: snp.ErrMalformed},
		"VCEK and extra ASK": {table: withASK(t, s)},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			opts := permissive()
			if tt.opts != nil {
				tt.opts(&opts)
			}
			_, err := snp.Verify(milanReport, tt.table, opts)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Fatalf("Verify() error = %v, want %v", err, tt.wantErr)
			}
			if err != nil && strings.Contains(err.Error(), "panic") {
				t.Errorf("Verify() recovered from a panic: %v", err)
			}
		})
	}
}

// withASK is the real VCEK with the simulated ASK and ARK beside it: AMD
// roots must ignore the table's ASK/ARK, the simulated root must reject the
// real VCEK.
func withASK(t testing.TB, s *sim.Signer) []byte {
	var sims abi.CertTable
	if err := sims.Unmarshal(s.CertTable()); err != nil {
		t.Fatal(err)
	}
	ask, _ := sims.GetByGUIDString(abi.AskGUID)
	ark, _ := sims.GetByGUIDString(abi.ArkGUID)
	return certTable(t, map[string][]byte{abi.VcekGUID: milanVCEK, abi.AskGUID: ask, abi.ArkGUID: ark})
}

// kdsGetter serves the recorded VCEK and AMD's Milan product chain, like
// AMD's KDS, and counts requests.
type kdsGetter struct{ calls int }

func (g *kdsGetter) Get(url string) ([]byte, error) {
	g.calls++
	switch {
	case strings.HasSuffix(url, "/vcek/v1/Milan/cert_chain"):
		return trust.AskArkMilanVcekBytes, nil
	case strings.Contains(url, "/vcek/v1/Milan/"+hex.EncodeToString(milanReport[offChipID:offChipID+64])):
		return milanVCEK, nil
	}
	return nil, fmt.Errorf("unexpected URL %s", url)
}

func TestVerifyMilanGetter(t *testing.T) {
	g := &kdsGetter{}
	opts := permissive()
	opts.Getter = g
	if _, err := snp.Verify(milanReport, nil, opts); err != nil {
		t.Fatalf("Verify(no table, getter) error = %v", err)
	}
	if g.calls == 0 {
		t.Error("Getter was not used")
	}
	// Without a Getter the network is never used.
	if _, err := snp.Verify(milanReport, nil, permissive()); !errors.Is(err, snp.ErrChain) {
		t.Errorf("Verify(no table, no getter) error = %v, want ErrChain", err)
	}
	// The simulated root never fetches.
	g.calls = 0
	opts.SimRoot = testSigner(t).RootCert()
	if _, err := snp.Verify(milanReport, nil, opts); !errors.Is(err, snp.ErrChain) || g.calls != 0 {
		t.Errorf("Verify(sim root, getter) error = %v after %d fetches, want ErrChain and none", err, g.calls)
	}
}

func TestClaimsJSON(t *testing.T) {
	claims, err := snp.Verify(milanReport, milanTable(t), permissive())
	if err != nil {
		t.Fatal(err)
	}
	b, err := jsonMarshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{`"measurement":"`, `"host_data":"`, `"report_data":"`, `"family_id":"`, `"image_id":"`,
		`"chip_id":"`, `"report_id":"`, `"guest_svn":0`, `"policy":{"value":720896,`, `"debug":true`, `"migration_agent":false`,
		`"smt":true`, `"abi_major":0`, `"abi_minor":0`, `"single_socket":false`, `"vmpl":0`, `"version":2`,
		`"reported_tcb":{"value":4901323769462652930,"bl":2,"tee":0,"snp":5,"microcode":68}`, `"current_tcb":`, `"committed_tcb":`, `"launch_tcb":`,
		`"platform_info":{"value":1,"smt_enabled":true,"tsme_enabled":false`, `"signer_info":{"signing_key":"vcek"`, `"product":"Milan"`, `"simulated":false`} {
		if !strings.Contains(string(b), key) {
			t.Errorf("claims JSON %s lacks %s", b, key)
		}
	}
}

func TestMain(m *testing.M) {
	code := m.Run()
	cleanupSigner()
	os.Exit(code)
}
