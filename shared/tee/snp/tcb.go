package snp

import (
	"fmt"
	"slices"

	"github.com/google/go-sev-guest/kds"
	spb "github.com/google/go-sev-guest/proto/sevsnp"
)

// checkTCB applies the rules the hardware guarantees for a genuine report,
// and nothing stricter (minimums are Options.MinimumTCB or, in the
// verifier, the appraisal policy's):
//
//   - REPORTED_TCB is the TCB the endorsement key certificate was issued
//     for, and at most CURRENT_TCB, component by component
//     (ErrTCBMismatch);
//   - COMMITTED_TCB is at most CURRENT_TCB, component by component, and the
//     committed firmware version at most the current one (ErrCommittedTCB).
//     A CURRENT_TCB above COMMITTED_TCB is normal: firmware or microcode
//     loaded at runtime and not (yet) committed.
//
// Components are compared byte by byte over all eight bytes of the
// TCB_VERSION, so the check holds for every product line's layout
// (Milan/Genoa: bootloader, TEE, SNP, microcode; Turin also FMC).
func checkTCB(r *spb.Report, certTCB kds.TCBVersion) error {
	reported := kds.TCBVersion(r.GetReportedTcb())
	current := kds.DecomposeTCBVersion(kds.TCBVersion(r.GetCurrentTcb()))
	if reported != certTCB {
		return fmt.Errorf("%w: reported TCB %#x, certificate TCB %#x", ErrTCBMismatch, uint64(reported), uint64(certTCB))
	}
	if !kds.TCBPartsLE(kds.DecomposeTCBVersion(reported), current) {
		return fmt.Errorf("%w: reported TCB %#x above current TCB %#x", ErrTCBMismatch, uint64(reported), r.GetCurrentTcb())
	}
	committed := kds.DecomposeTCBVersion(kds.TCBVersion(r.GetCommittedTcb()))
	if !kds.TCBPartsLE(committed, current) {
		return fmt.Errorf("%w: committed TCB %#x above current TCB %#x in byte(s) %v", ErrCommittedTCB,
			r.GetCommittedTcb(), r.GetCurrentTcb(), bytesAbove(r.GetCommittedTcb(), r.GetCurrentTcb()))
	}
	committedFW := [3]uint32{r.GetCommittedMajor(), r.GetCommittedMinor(), r.GetCommittedBuild()}
	currentFW := [3]uint32{r.GetCurrentMajor(), r.GetCurrentMinor(), r.GetCurrentBuild()}
	if slices.Compare(committedFW[:], currentFW[:]) > 0 {
		return fmt.Errorf("%w: committed firmware %d.%d build %d above current firmware %d.%d build %d", ErrCommittedTCB,
			committedFW[0], committedFW[1], committedFW[2], currentFW[0], currentFW[1], currentFW[2])
	}
	return nil
}

// bytesAbove lists the byte positions (0 = least significant) where a's
// TCB_VERSION component is above b's.
func bytesAbove(a, b uint64) []int {
	var out []int
	for i := range 8 {
		if byte(a>>(8*i)) > byte(b>>(8*i)) {
			out = append(out, i)
		}
	}
	return out
}
