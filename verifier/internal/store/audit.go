package store

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
)

// Document slots: which document is active for a purpose.
const (
	// ReferenceSlot holds the active reference values.
	ReferenceSlot    = "reference-values"
	policySlotPrefix = "policy:"
)

// PolicySlot names the slot of the appraisal policy for a TEE kind.
func PolicySlot(kind string) string { return policySlotPrefix + kind }

// PolicySlotKind returns the TEE kind of a policy slot.
func PolicySlotKind(slot string) (string, bool) {
	if len(slot) <= len(policySlotPrefix) || slot[:len(policySlotPrefix)] != policySlotPrefix {
		return "", false
	}
	return slot[len(policySlotPrefix):], true
}

// AuditReader reads the audit log (every Store is one).
type AuditReader interface {
	AuditRecords(ctx context.Context, afterID int64, limit int) ([]AuditRecord, error)
	AuditHead(ctx context.Context) (AuditHead, error)
}

// AuditProblem is one break in the audit chain.
type AuditProblem struct {
	// ID is the position (record id) where the break shows.
	ID int64 `json:"id"`
	// Reason says what is wrong there.
	Reason string `json:"reason"`
}

// AuditReport is the result of VerifyAudit.
type AuditReport struct {
	// OK is true when the chain is intact from the first record to the
	// head.
	OK bool `json:"ok"`
	// Entries is how many records were read.
	Entries int64 `json:"entries"`
	// HeadID and HeadSHA256 are the head record as stored; record them
	// somewhere else to detect a rewrite of the whole chain later.
	HeadID     int64  `json:"head_id"`
	HeadSHA256 string `json:"head_sha256"`
	// Problems lists every break, in order.
	Problems []AuditProblem `json:"problems,omitempty"`
}

// verifyPage is how many records VerifyAudit reads at a time.
const verifyPage = 1000

// maxProblems bounds the problems listed (a wholesale rewrite would
// otherwise list every record).
const maxProblems = 100

// VerifyAudit walks the whole audit log and checks its hash chain: ids
// count up from 1 without gaps, each record's PrevHash is the hash of the
// record before it, and the head names the last record and its hash. A
// modified record shows as a broken link at the record after it (or at the
// head, for the last one); a deleted one as a gap in the ids and a broken
// link. Store failures are returned as errors, not as problems.
func VerifyAudit(ctx context.Context, r AuditReader) (*AuditReport, error) {
	head, err := r.AuditHead(ctx)
	if err != nil {
		return nil, fmt.Errorf("verifying audit log: %w", err)
	}
	rep := &AuditReport{HeadID: head.LastID, HeadSHA256: hex.EncodeToString(head.Hash)}
	add := func(id int64, format string, args ...any) {
		if len(rep.Problems) < maxProblems {
			rep.Problems = append(rep.Problems, AuditProblem{ID: id, Reason: fmt.Sprintf(format, args...)})
		}
	}
	var (
		lastID int64
		prev   = GenesisHash()
	)
	for {
		recs, err := r.AuditRecords(ctx, lastID, verifyPage)
		if err != nil {
			return nil, fmt.Errorf("verifying audit log: %w", err)
		}
		for i := range recs {
			rec := &recs[i]
			rep.Entries++
			switch {
			case rec.ID != lastID+1 && rec.ID-lastID == 2:
				add(rec.ID, "entry %d is missing (deleted)", lastID+1)
			case rec.ID != lastID+1:
				add(rec.ID, "entries %d to %d are missing (deleted)", lastID+1, rec.ID-1)
			}
			if !bytes.Equal(rec.PrevHash, prev) {
				if rec.ID == lastID+1 && lastID > 0 {
					add(rec.ID, "entry %d does not chain to entry %d: entry %d was modified", rec.ID, lastID, lastID)
				} else {
					add(rec.ID, "entry %d does not chain to the entry before it", rec.ID)
				}
			}
			prev = rec.Hash()
			lastID = rec.ID
		}
		if len(recs) < verifyPage {
			break
		}
	}
	switch {
	case head.LastID > lastID:
		add(lastID+1, "entries %d to %d at the end are missing (log truncated)", lastID+1, head.LastID)
	case head.LastID < lastID:
		add(head.LastID+1, "entries %d to %d are not covered by the head record (appended behind the verifier's back)", head.LastID+1, lastID)
	case !bytes.Equal(head.Hash, prev):
		add(lastID, "entry %d (the last) was modified: its hash does not match the head record", lastID)
	}
	rep.OK = len(rep.Problems) == 0
	return rep, nil
}
