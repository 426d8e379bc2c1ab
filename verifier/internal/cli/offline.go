package cli

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/confidant-cvm/confidant/shared/exitcode"
	"github.com/confidant-cvm/confidant/verifier/internal/appraise"
	"github.com/confidant-cvm/confidant/verifier/internal/fault"
	"github.com/confidant-cvm/confidant/verifier/internal/offline"
	"github.com/confidant-cvm/confidant/verifier/internal/server"
)

func appraiseCmd(stdout io.Writer) *cobra.Command {
	var evidenceFile, refFile, now, simRoot, audience string
	var policies []string
	cmd := &cobra.Command{
		Use:   "appraise --evidence FILE --policy FILE --reference FILE [--now RFC3339] [--sim-root FILE]",
		Short: "Appraise one evidence file offline and print the claims",
		Long: `Run the full appraisal of one evidence envelope without a server: binding,
hardware and vTPM verification, and the appraisal policy over the reference
values. The nonce is taken from the runtime data (nothing is redeemed).

Prints the claims a token would carry and exits 0, or prints every failed check
({"error": ..., "reasons": [...]}) and exits 1.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ev, err := os.ReadFile(evidenceFile)
			if err != nil {
				return err
			}
			at, err := parseNow(now)
			if err != nil {
				return err
			}
			root, err := readCert(simRoot)
			if err != nil {
				return fmt.Errorf("--sim-root: %w", err)
			}
			claims, err := offline.Appraise(cmd.Context(), offline.AppraiseInput{
				Evidence: ev, PolicyFiles: policies, ReferenceFile: refFile, Now: at, SimRoot: root,
				Audience: audience, Reserved: server.PolicyReserved,
			})
			if err != nil {
				// The code is the server's (fault.Classify); the reasons
				// are every one, this being the operator's own tool.
				_, body := fault.Classify(err)
				body.Reasons = appraise.Reasons(err)
				if werr := writeJSON(stdout, body); werr != nil {
					return werr
				}
				return exitcode.Code(1)
			}
			return writeJSON(stdout, claims)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&evidenceFile, "evidence", "", "evidence envelope file (JSON)")
	fs.StringArrayVar(&policies, "policy", nil, "appraisal policy file (Rego); repeatable")
	fs.StringVar(&refFile, "reference", "", "reference values file (JSON)")
	fs.StringVar(&now, "now", "", "verification time, RFC 3339 (default: now)")
	fs.StringVar(&simRoot, "sim-root", "", "trust the simulated TEE root in this certificate file")
	fs.StringVar(&audience, "audience", "", "audience to show in the claims")
	for _, f := range []string{"evidence", "policy", "reference"} {
		_ = cmd.MarkFlagRequired(f)
	}
	return cmd
}

func inspectCmd(stdout io.Writer) *cobra.Command {
	var snpFile, vcekFile, certsFile, tdxFile, now, simRoot string
	cmd := &cobra.Command{
		Use:   "inspect (--snp REPORT [--vcek DER | --certs TABLE] [--sim-root FILE] | --tdx QUOTE) [--now RFC3339]",
		Short: "Verify and print one raw SNP report or TDX quote",
		Long: `Verify one raw hardware report (signature, certificate chain to the pinned
vendor root, TCB consistency, report version) and print it as JSON:
{"kind", "verified": true|false, "claims" (verified fields), "unverified"
(fields read without trust, on failure), "reasons"}. Guest policy bits,
VMPL and debug state are printed, not judged: that is the policy's job.
Exits 0 only when the report verified. No network is used.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			at, err := parseNow(now)
			if err != nil {
				return err
			}
			var out *offline.Inspection
			switch {
			case (snpFile == "") == (tdxFile == ""):
				return errors.New("give exactly one of --snp and --tdx")
			case tdxFile != "":
				if vcekFile != "" || certsFile != "" || simRoot != "" {
					return errors.New("--vcek, --certs and --sim-root go with --snp")
				}
				q, err := os.ReadFile(tdxFile)
				if err != nil {
					return err
				}
				out = offline.InspectTDX(offline.TDXInput{Quote: q, Now: at})
			default:
				if vcekFile != "" && certsFile != "" {
					return errors.New("give --vcek or --certs, not both")
				}
				in := offline.SNPInput{Now: at}
				if in.Report, err = os.ReadFile(snpFile); err != nil {
					return err
				}
				if vcekFile != "" {
					if in.VCEK, err = os.ReadFile(vcekFile); err != nil {
						return err
					}
				}
				if certsFile != "" {
					if in.CertTable, err = os.ReadFile(certsFile); err != nil {
						return err
					}
				}
				if in.SimRoot, err = readCert(simRoot); err != nil {
					return fmt.Errorf("--sim-root: %w", err)
				}
				out = offline.InspectSNP(in)
			}
			if err := writeJSON(stdout, out); err != nil {
				return err
			}
			if !out.Verified {
				return exitcode.Code(1)
			}
			return nil
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&snpFile, "snp", "", "raw SEV-SNP attestation report (1184 bytes)")
	fs.StringVar(&vcekFile, "vcek", "", "VCEK certificate (DER) for --snp")
	fs.StringVar(&certsFile, "certs", "", "extended-report certificate table for --snp")
	fs.StringVar(&simRoot, "sim-root", "", "verify --snp against this simulated root instead of AMD's")
	fs.StringVar(&tdxFile, "tdx", "", "raw TDX quote")
	fs.StringVar(&now, "now", "", "verification time, RFC 3339 (default: now)")
	return cmd
}
