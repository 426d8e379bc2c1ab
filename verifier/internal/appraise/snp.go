package appraise

import (
	"context"
	"crypto/x509"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/confidant-cvm/confidant/shared/evidence"
	"github.com/confidant-cvm/confidant/shared/tee/snp"
)

// SNPGetter fetches certificates from AMD's KDS (go-sev-guest's
// trust.HTTPSGetter).
type SNPGetter interface {
	Get(url string) ([]byte, error)
}

// SimHWModel prefixes the hwmodel claim of simulated evidence.
const SimHWModel = "confidant simulated AMD SEV-SNP"

// snpVerifier checks SEV-SNP reports: real ones against AMD's roots, or,
// for the simulated kind, against the configured simulated root only.
type snpVerifier struct {
	kind    evidence.Kind
	simRoot *x509.Certificate // set exactly for KindSimSNP
	getter  SNPGetter
	now     func() time.Time
	chains  *snp.ChainCache // verified VCEK/VLEK chains, shared by both kinds
}

// snpVMPLOffset is where the report's VMPL field lives (go-sev-guest abi).
const snpVMPLOffset = 0x30

func (v *snpVerifier) Verify(_ context.Context, env *evidence.Envelope, reportData [64]byte) (*TEE, error) {
	if len(env.Report) != evidence.SNPReportSize {
		return nil, fmt.Errorf("%w: SNP report is %d bytes", ErrMalformed, len(env.Report))
	}
	// The VMPL is a fact for the policy to judge: require the report's own.
	vmpl := int(binary.LittleEndian.Uint32(env.Report[snpVMPLOffset:]))
	if vmpl > 3 {
		return nil, fmt.Errorf("%w: SNP report VMPL %d", snp.ErrMalformed, vmpl)
	}
	opts := snp.Options{
		SimRoot:             v.simRoot,
		Now:                 v.now,
		ReportData:          reportData[:],
		AllowDebug:          true,
		AllowMigrationAgent: true,
		AllowSMT:            true,
		VMPL:                &vmpl,
		ChainCache:          v.chains,
	}
	if v.simRoot == nil && v.getter != nil {
		opts.Getter = v.getter
	}
	c, err := snp.Verify(env.Report, env.CertTable, opts)
	if err != nil {
		return nil, wrapEach("verifying "+string(v.kind)+" report", err)
	}
	if c.Simulated != (v.kind == evidence.KindSimSNP) {
		return nil, fmt.Errorf("verifying %s report: %w: simulated=%v", v.kind, snp.ErrChain, c.Simulated)
	}
	fields, err := jsonObject(c)
	if err != nil {
		return nil, fmt.Errorf("encoding %s claims: %w", v.kind, err)
	}
	fields["kind"] = string(v.kind)
	t := &TEE{Fields: fields, Debug: c.Policy.Debug, Subject: snpSubject(v.kind, c)}
	if v.kind == evidence.KindSimSNP {
		t.HWModel = SimHWModel + " (" + c.Product + ")"
	} else {
		t.HWModel = "AMD SEV-SNP " + c.Product
	}
	return t, nil
}

// snpSubject is the guest's identity, the sub claim:
// "<kind>:<MEASUREMENT hex>:<HOST_DATA hex>". MEASUREMENT names the image
// (firmware, kernel, initramfs, command line, vCPUs) and HOST_DATA the VM:
// hostd launches every guest with a digest of its own identity there, so
// two VMs of one image differ in sub and one VM keeps its sub across
// reboots. Evidence without HOST_DATA (zero) names the image only.
func snpSubject(kind evidence.Kind, c *snp.Claims) string {
	return string(kind) + ":" + c.Measurement + ":" + c.HostData
}
