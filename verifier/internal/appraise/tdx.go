package appraise

import (
	"context"
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

// tdxSubject is the TD's identity, the sub claim:
// "tdx:<MRTD hex>:<MRCONFIGID hex>". MRTD names the firmware image and
// MRCONFIGID the VM (hostd launches every TD with a digest of its own
// identity there). MROWNER and MROWNERCONFIG stay in the tee claims.
func tdxSubject(c *tdx.Claims) string {
	return string(evidence.KindTDX) + ":" + hex.EncodeToString(c.MRTD) + ":" + hex.EncodeToString(c.MRConfigID)
}
