package snp_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/google/go-sev-guest/kds"

	"github.com/confidant-cvm/confidant/shared/tee/snp"
	"github.com/confidant-cvm/confidant/shared/tee/snp/sim"
)

// resignFrom edits a copy of report and signs it again with s.
func resignFrom(t testing.TB, s *sim.Signer, report []byte, edit func(r []byte)) []byte {
	t.Helper()
	r := bytes.Clone(report)
	edit(r)
	out, err := s.Resign(r)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// tcbWith is the simulated platform's TCB with one change.
func tcbWith(t testing.TB, s *sim.Signer, change func(p *kds.TCBParts)) uint64 {
	t.Helper()
	p := s.TCB()
	change(&p)
	v, err := kds.ComposeTCBParts(p)
	if err != nil {
		t.Fatal(err)
	}
	return uint64(v)
}

// TestVerifyTCBRules checks the hardware's TCB rules and only those: the
// reported TCB is the VCEK's, the committed TCB is at most the current
// one. A current TCB newer than the committed (and reported) one is what
// healthy hosts report after a runtime firmware or microcode update.
func TestVerifyTCBRules(t *testing.T) {
	s := testSigner(t)
	good, table, err := s.Sign(simRequest())
	if err != nil {
		t.Fatal(err)
	}
	base := tcbWith(t, s, func(*kds.TCBParts) {})
	components := map[string]func(p *kds.TCBParts){
		"bootloader": func(p *kds.TCBParts) { p.BlSpl++ },
		"tee":        func(p *kds.TCBParts) { p.TeeSpl++ },
		"snp":        func(p *kds.TCBParts) { p.SnpSpl++ },
		"microcode":  func(p *kds.TCBParts) { p.UcodeSpl++ },
	}
	type tcbs struct{ current, committed, reported, launch uint64 }
	tests := map[string]struct {
		tcb     tcbs
		fw      func(r []byte) // edits the firmware versions
		wantErr error
	}{
		"all equal": {tcb: tcbs{base, base, base, base}},
		"launch below the others": {tcb: tcbs{base, base, base,
			tcbWith(t, s, func(p *kds.TCBParts) { p.UcodeSpl-- })}},
		"current and committed above reported": {tcb: tcbs{
			tcbWith(t, s, func(p *kds.TCBParts) { p.SnpSpl++ }), tcbWith(t, s, func(p *kds.TCBParts) { p.SnpSpl++ }), base, base}},
		"reported not the VCEK's": {tcb: tcbs{
			tcbWith(t, s, func(p *kds.TCBParts) { p.SnpSpl++ }), base, tcbWith(t, s, func(p *kds.TCBParts) { p.SnpSpl++ }), base},
			wantErr: snp.ErrTCBMismatch},
		// Turin puts FMC in byte 0 and SNP in byte 3: every byte counts.
		"committed above current in byte 3": {tcb: tcbs{base, base + 1<<24, base, base}, wantErr: snp.ErrCommittedTCB},
		"committed firmware build above current": {tcb: tcbs{base, base, base, base},
			fw: func(r []byte) { r[offCommittedFW]++ }, wantErr: snp.ErrCommittedTCB},
		"committed firmware minor above current": {tcb: tcbs{base, base, base, base},
			fw: func(r []byte) { r[offCommittedFW+1]++ }, wantErr: snp.ErrCommittedTCB},
		"committed firmware major above current": {tcb: tcbs{base, base, base, base},
			fw: func(r []byte) { r[offCommittedFW+2]++ }, wantErr: snp.ErrCommittedTCB},
		// 1.54 build 30 committed, 1.55 build 21 running: versions order
		// by major, minor, then build.
		"committed firmware older with a higher build": {tcb: tcbs{base, base, base, base},
			fw: func(r []byte) { r[offCommittedFW], r[offCommittedFW+1] = 30, r[offCurrentFW+1]-1 }},
		"current firmware newer": {tcb: tcbs{base, base, base, base},
			fw: func(r []byte) { r[offCurrentFW+1]++ }},
	}
	for name, change := range components {
		tests["current above committed in "+name] = struct {
			tcb     tcbs
			fw      func(r []byte)
			wantErr error
		}{tcb: tcbs{tcbWith(t, s, change), base, base, base}}
		tests["committed above current in "+name] = struct {
			tcb     tcbs
			fw      func(r []byte)
			wantErr error
		}{tcb: tcbs{base, tcbWith(t, s, change), base, base}, wantErr: snp.ErrCommittedTCB}
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			report := resignFrom(t, s, good, func(r []byte) {
				le := binary.LittleEndian
				le.PutUint64(r[offCurrentTCB:], tt.tcb.current)
				le.PutUint64(r[offCommitted:], tt.tcb.committed)
				le.PutUint64(r[offReportedTCB:], tt.tcb.reported)
				le.PutUint64(r[offLaunchTCB:], tt.tcb.launch)
				if tt.fw != nil {
					tt.fw(r)
				}
			})
			claims, err := snp.Verify(report, table, simOptions(s))
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Fatalf("Verify() error = %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			got := tcbs{claims.CurrentTCB.Value, claims.CommittedTCB.Value, claims.ReportedTCB.Value, claims.LaunchTCB.Value}
			if got != tt.tcb {
				t.Errorf("claims TCBs (current, committed, reported, launch) = %#x, want %#x", got, tt.tcb)
			}
		})
	}
}

// TestClaimsTCBComponents checks that every TCB of the report reaches the
// claims decoded into its components, for policies to set minimums on.
func TestClaimsTCBComponents(t *testing.T) {
	s := testSigner(t)
	good, table, err := s.Sign(simRequest())
	if err != nil {
		t.Fatal(err)
	}
	report := resignFrom(t, s, good, func(r []byte) {
		le := binary.LittleEndian
		le.PutUint64(r[offCurrentTCB:], tcbWith(t, s, func(p *kds.TCBParts) { p.BlSpl, p.TeeSpl, p.SnpSpl, p.UcodeSpl = 9, 8, 30, 250 }))
		le.PutUint64(r[offCommitted:], tcbWith(t, s, func(p *kds.TCBParts) { p.BlSpl, p.TeeSpl, p.SnpSpl, p.UcodeSpl = 5, 1, 23, 214 }))
		le.PutUint64(r[offLaunchTCB:], tcbWith(t, s, func(p *kds.TCBParts) { p.BlSpl, p.TeeSpl, p.SnpSpl, p.UcodeSpl = 3, 0, 21, 200 }))
	})
	claims, err := snp.Verify(report, table, simOptions(s))
	if err != nil {
		t.Fatal(err)
	}
	parts := func(c snp.TCB) [4]uint8 { return [4]uint8{c.Bootloader, c.TEE, c.SNP, c.Microcode} }
	for name, tt := range map[string]struct {
		got  snp.TCB
		want [4]uint8
	}{
		"current":   {claims.CurrentTCB, [4]uint8{9, 8, 30, 250}},
		"committed": {claims.CommittedTCB, [4]uint8{5, 1, 23, 214}},
		"reported":  {claims.ReportedTCB, [4]uint8{4, 0, 22, 213}},
		"launch":    {claims.LaunchTCB, [4]uint8{3, 0, 21, 200}},
	} {
		if parts(tt.got) != tt.want {
			t.Errorf("%s TCB = %+v, want bl, tee, snp, microcode %v", name, tt.got, tt.want)
		}
	}
}
