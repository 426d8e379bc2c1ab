package snp_test

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"os"
	"sync"
	"testing"

	"github.com/google/go-sev-guest/kds"

	"github.com/confidant-cvm/confidant/shared/tee/snp"
	"github.com/confidant-cvm/confidant/shared/tee/snp/sim"
)

var (
	signerOnce sync.Once
	signerDir  string
	signer     *sim.Signer
	signerErr  error
)

// testSigner returns one simulated signer per test binary (RSA key
// generation is slow).
func testSigner(t testing.TB) *sim.Signer {
	t.Helper()
	signerOnce.Do(func() {
		if signerDir, signerErr = os.MkdirTemp("", "snp-sim-"); signerErr != nil {
			return
		}
		signer, signerErr = sim.Create(signerDir)
	})
	if signerErr != nil {
		t.Fatalf("creating simulated signer: %v", signerErr)
	}
	return signer
}

func cleanupSigner() {
	if signerDir != "" {
		os.RemoveAll(signerDir)
	}
}

func simRequest() sim.Request {
	var req sim.Request
	req.ReportData[0] = 0xaa
	return req
}

func jsonMarshal(v any) ([]byte, error) { return json.Marshal(v) }

func simOptions(s *sim.Signer) snp.Options {
	return snp.Options{SimRoot: s.RootCert(), AllowSMT: true}
}

func TestVerifySimulated(t *testing.T) {
	s := testSigner(t)
	req := sim.Request{GuestSVN: 7, VMPL: 0}
	req.ReportData[0], req.Measurement[0], req.HostData[0], req.FamilyID[0], req.ImageID[0] = 1, 2, 3, 4, 5
	report, table, err := s.Sign(req)
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	opts := simOptions(s)
	opts.ReportData = req.ReportData[:]
	opts.Measurements = [][]byte{req.Measurement[:]}
	opts.MinimumTCB = s.TCB()
	opts.MinimumVersion = 3
	opts.Product = "Milan"
	claims, err := snp.Verify(report, table, opts)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if !claims.Simulated || claims.Product != "Milan" || claims.Version != 3 || claims.GuestSVN != 7 || claims.Policy.Debug {
		t.Errorf("claims = %+v", claims)
	}
	if claims.HostData[:2] != "03" || claims.FamilyID[:2] != "04" || claims.ImageID[:2] != "05" {
		t.Errorf("claims = %+v, want the requested host data, family and image IDs", claims)
	}
}

func TestVerifySimulatedRejected(t *testing.T) {
	s := testSigner(t)
	good, table, err := s.Sign(sim.Request{})
	if err != nil {
		t.Fatal(err)
	}
	debug, _, err := s.Sign(sim.Request{Policy: sim.DefaultPolicy | 1<<19})
	if err != nil {
		t.Fatal(err)
	}
	migration, _, err := s.Sign(sim.Request{Policy: sim.DefaultPolicy | 1<<18})
	if err != nil {
		t.Fatal(err)
	}
	vmpl2, _, err := s.Sign(sim.Request{VMPL: 2})
	if err != nil {
		t.Fatal(err)
	}
	noSMT, _, err := s.Sign(sim.Request{Policy: 1<<17 | 31})
	if err != nil {
		t.Fatal(err)
	}
	resign := func(mutate func(r []byte)) []byte {
		r := append([]byte(nil), good...)
		mutate(r)
		out, err := s.Resign(r)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	higher := s.TCB()
	higher.SnpSpl++
	higherTCB, err := kds.ComposeTCBParts(higher)
	if err != nil {
		t.Fatal(err)
	}
	lower := s.TCB()
	lower.UcodeSpl--
	lowerTCB, _ := kds.ComposeTCBParts(lower)
	other, err := sim.Create(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	otherReport, otherTable, err := other.Sign(sim.Request{})
	if err != nil {
		t.Fatal(err)
	}
	tests := map[string]struct {
		report, table []byte
		opts          snp.Options
		wantErr       error
	}{
		"good":                   {report: good, table: table, opts: simOptions(s)},
		"no sim root":            {report: good, table: table, opts: snp.Options{AllowSMT: true}, wantErr: snp.ErrChain},
		"other sim root":         {report: good, table: table, opts: simOptions(other), wantErr: snp.ErrChain},
		"other signer's table":   {report: good, table: otherTable, opts: simOptions(s), wantErr: snp.ErrChain},
		"other signer's all":     {report: otherReport, table: otherTable, opts: simOptions(s), wantErr: snp.ErrChain},
		"other signer's report":  {report: otherReport, table: table, opts: simOptions(s), wantErr: snp.ErrSignature},
		"flipped report data":    {report: flip(good, offReportData, 1), table: table, opts: simOptions(s), wantErr: snp.ErrSignature},
		"flipped measurement":    {report: flip(good, offMeasurement, 1), table: table, opts: simOptions(s), wantErr: snp.ErrSignature},
		"flipped signature":      {report: flip(good, offSignature+3, 1), table: table, opts: simOptions(s), wantErr: snp.ErrSignature},
		"debug policy":           {report: debug, table: table, opts: simOptions(s), wantErr: snp.ErrDebug},
		"migration agent policy": {report: migration, table: table, opts: simOptions(s), wantErr: snp.ErrMigrationAgent},
		"VMPL 2":                 {report: vmpl2, table: table, opts: simOptions(s), wantErr: snp.ErrVMPL},
		"SMT by default":         {report: good, table: table, opts: snp.Options{SimRoot: s.RootCert()}, wantErr: snp.ErrSMT},
		"no SMT passes":          {report: noSMT, table: table, opts: snp.Options{SimRoot: s.RootCert()}},
		// The guest policy forbids SMT, the platform runs with it: only
		// PLATFORM_INFO shows it.
		"SMT enabled on the platform": {report: resignFrom(t, s, noSMT, func(r []byte) { r[offPlatform] |= 1 }),
			table: table, opts: snp.Options{SimRoot: s.RootCert()}, wantErr: snp.ErrSMT},
		"SMT enabled on the platform, allowed": {report: resignFrom(t, s, noSMT, func(r []byte) { r[offPlatform] |= 1 }),
			table: table, opts: simOptions(s)},
		"reported TCB above cert": {report: resign(func(r []byte) {
			binary.LittleEndian.PutUint64(r[offReportedTCB:], uint64(higherTCB))
		}), table: table, opts: simOptions(s), wantErr: snp.ErrTCBMismatch},
		"reported TCB below cert": {report: resign(func(r []byte) {
			binary.LittleEndian.PutUint64(r[offReportedTCB:], uint64(lowerTCB))
		}), table: table, opts: simOptions(s), wantErr: snp.ErrTCBMismatch},
		"committed TCB below current passes": {report: resign(func(r []byte) {
			binary.LittleEndian.PutUint64(r[offCommitted:], uint64(lowerTCB))
		}), table: table, opts: simOptions(s)},
		"current TCB below reported": {report: resign(func(r []byte) {
			binary.LittleEndian.PutUint64(r[offCurrentTCB:], uint64(lowerTCB))
			binary.LittleEndian.PutUint64(r[offCommitted:], uint64(lowerTCB))
		}), table: table, opts: simOptions(s), wantErr: snp.ErrTCBMismatch},
		"committed firmware below current passes": {report: resign(func(r []byte) { r[offCommittedFW]-- }), table: table, opts: simOptions(s)},
		"committed firmware above current":        {report: resign(func(r []byte) { r[offCommittedFW]++ }), table: table, opts: simOptions(s), wantErr: snp.ErrCommittedTCB},
		"other chip ID":                           {report: resign(func(r []byte) { r[offChipID] ^= 1 }), table: table, opts: simOptions(s), wantErr: snp.ErrChain},
		"masked chip ID":                          {report: resign(func(r []byte) { clear(r[offChipID : offChipID+64]) }), table: table, opts: simOptions(s)},
		"version 2": {report: resign(func(r []byte) {
			binary.LittleEndian.PutUint32(r[offVersion:], 2)
			clear(r[0x188:0x18B])
		}), table: table, opts: func() snp.Options { o := simOptions(s); o.MinimumVersion = 3; return o }(), wantErr: snp.ErrReportVersion},
		"Genoa required": {report: good, table: table, opts: func() snp.Options { o := simOptions(s); o.Product = "Genoa"; return o }(), wantErr: snp.ErrChain},
		"TCB too low":    {report: good, table: table, opts: func() snp.Options { o := simOptions(s); o.MinimumTCB = higher; return o }(), wantErr: snp.ErrTCBTooLow},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			claims, err := snp.Verify(tt.report, tt.table, tt.opts)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Fatalf("Verify() = %+v, %v; want error %v", claims, err, tt.wantErr)
			}
		})
	}
}
