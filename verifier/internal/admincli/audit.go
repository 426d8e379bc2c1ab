package admincli

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/confidant-cvm/confidant/shared/exitcode"
	"github.com/confidant-cvm/confidant/shared/termsafe"
)

func auditCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "audit", Short: "Read and verify the audit log"}
	cmd.AddCommand(auditListCmd(g), auditExportCmd(g), auditVerifyCmd(g))
	return cmd
}

func auditListCmd(g *globals) *cobra.Command {
	var limit int
	var after int64
	cmd := &cobra.Command{
		Use:   "list [--limit N] [--after ID]",
		Short: "List audit entries: the last N, or N after an id",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if limit < 1 || limit > 1000 {
				return fmt.Errorf("--limit %d: want 1 to 1000", limit)
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			start := after
			if !cmd.Flags().Changed("after") {
				head, err := c.Audit(cmd.Context(), 0, 1)
				if err != nil {
					return err
				}
				start = max(0, head.HeadID-int64(limit))
			}
			resp, err := c.Audit(cmd.Context(), start, limit)
			if err != nil {
				return err
			}
			if g.json {
				return g.printJSON(resp)
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tTIME\tEVENT\tOUTCOME\tTEE\tKEY\tSUB\tJTI\tREASONS")
			for _, e := range resp.Entries {
				key := e.KeyName
				if key != "" && e.KeyVersion != 0 {
					key += fmt.Sprintf("@%d", e.KeyVersion)
				}
				reasons := make([]string, len(e.Reasons))
				for i, r := range e.Reasons {
					reasons[i] = esc(r)
				}
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.ID, e.Time.Format(time.RFC3339), esc(e.Event), esc(e.Outcome),
					dash(e.TEE), dash(key), dash(e.Subject), dash(e.TokenID), strings.Join(reasons, "; "))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().IntVar(&limit, "limit", 50, "how many entries")
	cmd.Flags().Int64Var(&after, "after", 0, "list entries after this id (default: the last --limit entries)")
	return cmd
}

func auditExportCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "export",
		Short: "Write every audit entry to stdout as JSON lines",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			n, err := c.ExportAudit(cmd.Context(), jsonLines{g.stdout})
			if err != nil {
				return err
			}
			fmt.Fprintf(g.stderr, "exported %d audit entries\n", n)
			return nil
		},
	}
	return cmd
}

func auditVerifyCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Check the audit log's hash chain; exit status 1 when it is broken",
		Long: `Check the audit log's hash chain from the first entry to the head: a modified,
deleted or truncated entry is reported with its position, and the exit status
is 1. Keep the printed head hash somewhere else: a later verify that shows a
different hash for the same head id means the log was rewritten.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			rep, err := c.VerifyAudit(cmd.Context())
			if err != nil {
				return err
			}
			if g.json {
				if err := g.printJSON(rep); err != nil {
					return err
				}
			} else if rep.OK {
				fmt.Fprintf(g.stdout, "audit log intact: %d entries, head %d sha256 %s\n", rep.Entries, rep.HeadID, esc(rep.HeadSHA256))
			} else {
				fmt.Fprintf(g.stdout, "audit log BROKEN: %d entries read, head %d sha256 %s\n", rep.Entries, rep.HeadID, esc(rep.HeadSHA256))
				for _, p := range rep.Problems {
					fmt.Fprintf(g.stdout, "  at entry %d: %s\n", p.ID, esc(p.Reason))
				}
			}
			if !rep.OK {
				return exitcode.Code(1)
			}
			return nil
		},
	}
	return cmd
}

// dash is an escaped cell of the audit table, "-" when empty.
func dash(s string) string {
	if s == "" {
		return "-"
	}
	return esc(s)
}

// jsonLines writes the audit export in pure ASCII (termsafe.JSON), which
// decodes to the same entries. admin.Client.ExportAudit writes one whole
// line at a time, so no rune is split between writes.
type jsonLines struct{ w io.Writer }

func (j jsonLines) Write(p []byte) (int, error) {
	if _, err := j.w.Write(termsafe.JSON(p)); err != nil {
		return 0, err
	}
	return len(p), nil
}
