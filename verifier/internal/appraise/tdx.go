package appraise

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/confidant-cvm/confidant/shared/evidence"
	"github.com/confidant-cvm/confidant/shared/tee/tdx"
)

// TDXGetter fetches collateral from Intel's PCS.
type TDXGetter = tdx.Getter

// tdxVerifier checks TDX quotes against Intel's root.
type tdxVerifier struct {
	getter TDXGetter
	now    func() time.Time
}

func (v *tdxVerifier) Verify(ctx context.Context, env *evidence.Envelope, reportData [64]byte) (*TEE, error) {
	c, err := tdx.VerifyContext(ctx, env.Report, tdx.Options{
		Now:        v.now,
		Getter:     v.getter,
		ReportData: reportData[:],
		// TD_ATTRIBUTES.DEBUG is a fact for the policy to judge.
		AllowDebug: true,
	})
	if err != nil {
		return nil, wrapEach("verifying TDX quote", err)
	}
	fields, err := jsonObject(c)
	if err != nil {
		return nil, fmt.Errorf("encoding TDX claims: %w", err)
	}
	fields["kind"] = string(evidence.KindTDX)
	return &TEE{Fields: fields, HWModel: "Intel TDX", Debug: c.TDAttributes.Debug, Subject: tdxSubject(c)}, nil
}

// tdxSubject is the stable guest identity of a TD: the kind and
// SHA-256(MRTD || MRCONFIGID || MROWNER || MROWNERCONFIG), the firmware
// measurement and the host-set identity fields.
func tdxSubject(c *tdx.Claims) string {
	h := sha256.New()
	for _, b := range [][]byte{c.MRTD, c.MRConfigID, c.MROwner, c.MROwnerConfig} {
		h.Write(b)
	}
	return string(evidence.KindTDX) + ":" + hex.EncodeToString(h.Sum(nil))
}
