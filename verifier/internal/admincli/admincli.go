// Package admincli is `confidant-verifier admin`: the command line of the
// verifier's admin API (package admin), over the admin unix socket or TCP
// with mutual TLS.
//
// Key material is never printed: a generated key is written only to the
// file --return-key-file names (mode 0600, through a temporary file linked
// into place, never replacing an existing file), and an imported key is
// read from a file only its owner can read.
package admincli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/confidant-cvm/confidant/verifier/internal/admin"
)

// DefaultStateDir is the verifier's default state directory (its admin
// socket is admin.sock in it).
const DefaultStateDir = "/var/lib/confidant-verifier"

// ExitError ends the program with a status after the output was printed
// (for example a broken audit chain).
type ExitError struct{ Code int }

func (e ExitError) Error() string { return fmt.Sprintf("exit status %d", e.Code) }

// ExitCode returns the status.
func (e ExitError) ExitCode() int { return e.Code }

type globals struct {
	stdout, stderr io.Writer
	socket         string
	stateDir       string
	url            string
	tlsCert        string
	tlsKey         string
	tlsCA          string
	json           bool
	timeout        time.Duration
}

func (g *globals) client() (*admin.Client, error) {
	cfg := admin.ClientConfig{Timeout: g.timeout}
	if g.url != "" {
		if g.tlsCert == "" || g.tlsKey == "" || g.tlsCA == "" {
			return nil, errors.New("--url needs --tls-cert, --tls-key and --tls-ca (the admin API over TCP uses mutual TLS)")
		}
		cert, err := tls.LoadX509KeyPair(g.tlsCert, g.tlsKey)
		if err != nil {
			return nil, fmt.Errorf("loading the client certificate: %w", err)
		}
		caPEM, err := os.ReadFile(g.tlsCA)
		if err != nil {
			return nil, fmt.Errorf("reading --tls-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(caPEM) {
			return nil, fmt.Errorf("--tls-ca %s: no PEM certificate", g.tlsCA)
		}
		cfg.URL = g.url
		cfg.TLS = &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert}, RootCAs: pool}
	} else {
		cfg.Socket = g.socket
		if cfg.Socket == "" {
			cfg.Socket = filepath.Join(g.stateDir, "admin.sock")
		}
	}
	return admin.NewClient(cfg)
}

func (g *globals) printJSON(v any) error {
	enc := json.NewEncoder(g.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// Command returns the `admin` command tree.
func Command(stdout, stderr io.Writer) *cobra.Command {
	g := &globals{stdout: stdout, stderr: stderr}
	cmd := &cobra.Command{
		Use:   "admin",
		Short: "Administer a running verifier: keys, policies, reference values, audit log",
		Long: `Administer a running verifier through its admin API: release keys (create,
import, rotate, delete, list, show, release policy), appraisal policies and
reference values (stored and used at once by every replica), and the audit log
(list, export, verify its hash chain).

The admin API listens on <state-dir>/admin.sock (mode 0600) unless the server
was started with --admin-listen; over TCP it needs mutual TLS (--url with
--tls-cert, --tls-key and --tls-ca). Key material is never printed.`,
	}
	pf := cmd.PersistentFlags()
	pf.StringVar(&g.socket, "socket", "", "admin socket (default: <state-dir>/admin.sock)")
	pf.StringVar(&g.stateDir, "state-dir", DefaultStateDir, "the verifier's state directory")
	pf.StringVar(&g.url, "url", "", "admin API over TCP: https://HOST:PORT (mutual TLS)")
	pf.StringVar(&g.tlsCert, "tls-cert", "", "client certificate (PEM) for --url")
	pf.StringVar(&g.tlsKey, "tls-key", "", "client key (PEM) for --url")
	pf.StringVar(&g.tlsCA, "tls-ca", "", "CA of the admin server's certificate (PEM) for --url")
	pf.BoolVar(&g.json, "json", false, "print JSON instead of text")
	pf.DurationVar(&g.timeout, "timeout", admin.DefaultTimeout, "per-request timeout")
	cmd.AddCommand(keyCmd(g), policyCmd(g), referenceCmd(g), auditCmd(g))
	return cmd
}

func keyCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "key", Short: "Manage release keys"}
	var policyFile, returnFile, keyFile string
	var version int

	create := &cobra.Command{
		Use:   "create NAME [--release-policy FILE] [--return-key-file OUT]",
		Short: "Create a platform-managed key (32 random bytes made by the verifier)",
		Long: `Create a platform-managed key: the verifier generates 32 random bytes. With
--return-key-file the key is written to OUT (mode 0600; OUT must not exist),
once, for the image tool to encrypt a disk with; otherwise it never leaves the
verifier except wrapped to attested guests. Without --release-policy the key
gets the default release policy (policies/release/default.rego).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			policy, err := readPolicy(policyFile)
			if err != nil {
				return err
			}
			var out *keyFileWriter
			if returnFile != "" {
				if out, err = newKeyFileWriter(returnFile); err != nil {
					return err
				}
				defer out.abort()
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			resp, err := c.CreateKey(cmd.Context(), admin.CreateKeyRequest{Name: args[0], ReleasePolicy: policy, ReturnKey: out != nil})
			if err != nil {
				return err
			}
			return g.keyResult(resp, out, "created")
		},
	}
	create.Flags().StringVar(&policyFile, "release-policy", "", "release policy file (Rego); default: the default policy")
	create.Flags().StringVar(&returnFile, "return-key-file", "", "write the generated key to this new file (0600)")

	imp := &cobra.Command{
		Use:   "import NAME --key-file F [--release-policy FILE]",
		Short: "Import a customer-managed key (16 to 1024 bytes from a file only its owner can read)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			policy, err := readPolicy(policyFile)
			if err != nil {
				return err
			}
			material, err := readKeyFile(keyFile)
			if err != nil {
				return err
			}
			defer clear(material)
			c, err := g.client()
			if err != nil {
				return err
			}
			resp, err := c.ImportKey(cmd.Context(), args[0], material, policy)
			if err != nil {
				return err
			}
			return g.keyResult(resp, nil, "imported")
		},
	}
	imp.Flags().StringVar(&keyFile, "key-file", "", "the key: raw bytes, mode 0600 (required)")
	imp.Flags().StringVar(&policyFile, "release-policy", "", "release policy file (Rego); default: the default policy")
	_ = imp.MarkFlagRequired("key-file")

	rotate := &cobra.Command{
		Use:   "rotate NAME [--return-key-file OUT | --key-file F]",
		Short: "Add a version to a key; older versions stay releasable until deleted",
		Long: `Add a version to a key and make it the latest. A platform-managed key gets 32
new random bytes (written to --return-key-file OUT when given); a
customer-managed key needs the new key in --key-file. Older versions stay
releasable (by version) until they are deleted, so disks can be re-keyed.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := admin.RotateKeyRequest{}
			if keyFile != "" && returnFile != "" {
				return errors.New("give --key-file (customer-managed key) or --return-key-file (platform-managed key), not both")
			}
			if keyFile != "" {
				material, err := readKeyFile(keyFile)
				if err != nil {
					return err
				}
				defer clear(material)
				req.KeyMaterial = admin.EncodeKey(material)
			}
			var out *keyFileWriter
			if returnFile != "" {
				var err error
				if out, err = newKeyFileWriter(returnFile); err != nil {
					return err
				}
				defer out.abort()
				req.ReturnKey = true
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			resp, err := c.RotateKey(cmd.Context(), args[0], req)
			if err != nil {
				return err
			}
			return g.keyResult(resp, out, "rotated")
		},
	}
	rotate.Flags().StringVar(&returnFile, "return-key-file", "", "write the new generated key to this new file (0600)")
	rotate.Flags().StringVar(&keyFile, "key-file", "", "the new key of a customer-managed key (mode 0600)")

	del := &cobra.Command{
		Use:   "delete NAME [--version N]",
		Short: "Delete one version of a key, or the whole key",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if version < 0 {
				return fmt.Errorf("--version %d: want a version number", version)
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			resp, err := c.DeleteKey(cmd.Context(), args[0], version)
			if err != nil {
				return err
			}
			if g.json {
				return g.printJSON(resp)
			}
			if resp.Version == 0 {
				fmt.Fprintf(g.stdout, "deleted key %s (every version)\n", resp.Name)
			} else {
				fmt.Fprintf(g.stdout, "deleted version %d of key %s\n", resp.Version, resp.Name)
			}
			return nil
		},
	}
	del.Flags().IntVar(&version, "version", 0, "delete only this version (default: the whole key)")

	list := &cobra.Command{
		Use:   "list",
		Short: "List the keys (metadata only)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			resp, err := c.ListKeys(cmd.Context())
			if err != nil {
				return err
			}
			if g.json {
				return g.printJSON(resp)
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tORIGIN\tLATEST\tVERSIONS\tRELEASE POLICY\tUPDATED")
			for _, k := range resp.Keys {
				fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\n", k.Name, k.Origin, k.LatestVersion, versions(k),
					short(k.ReleasePolicySHA256), k.UpdatedAt.Format(time.RFC3339))
			}
			return tw.Flush()
		},
	}

	show := &cobra.Command{
		Use:   "show NAME",
		Short: "Show a key's metadata and release policy",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			k, err := c.GetKey(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if g.json {
				return g.printJSON(k)
			}
			fmt.Fprintf(g.stdout, "name:           %s\norigin:         %s\nlatest version: %d\ncreated:        %s\nupdated:        %s\n",
				k.Name, k.Origin, k.LatestVersion, k.CreatedAt.Format(time.RFC3339), k.UpdatedAt.Format(time.RFC3339))
			fmt.Fprintln(g.stdout, "versions:")
			for _, v := range k.Versions {
				fmt.Fprintf(g.stdout, "  %d  created %s  kek %s\n", v.Version, v.CreatedAt.Format(time.RFC3339), v.KEKID)
			}
			fmt.Fprintf(g.stdout, "release policy (sha256 %s):\n%s\n", k.ReleasePolicySHA256, strings.TrimRight(k.ReleasePolicy, "\n"))
			return nil
		},
	}

	setPolicy := &cobra.Command{
		Use:   "set-policy NAME --release-policy FILE",
		Short: "Replace a key's release policy",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			policy, err := readPolicy(policyFile)
			if err != nil {
				return err
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			resp, err := c.SetReleasePolicy(cmd.Context(), args[0], policy)
			if err != nil {
				return err
			}
			if g.json {
				return g.printJSON(resp)
			}
			fmt.Fprintf(g.stdout, "release policy of key %s set (sha256 %s)\n", resp.Key.Name, resp.Key.ReleasePolicySHA256)
			return nil
		},
	}
	setPolicy.Flags().StringVar(&policyFile, "release-policy", "", "release policy file (Rego) (required)")
	_ = setPolicy.MarkFlagRequired("release-policy")

	cmd.AddCommand(create, imp, rotate, del, list, show, setPolicy)
	return cmd
}

func versions(k admin.Key) string {
	var s []string
	for _, v := range k.Versions {
		s = append(s, fmt.Sprint(v.Version))
	}
	return strings.Join(s, ",")
}

func short(sha string) string {
	if len(sha) > 12 {
		return sha[:12]
	}
	return sha
}

// keyResult writes a returned key to its file and prints the result
// without the key.
func (g *globals) keyResult(resp *admin.KeyResponse, out *keyFileWriter, verb string) error {
	material := resp.KeyMaterial
	resp.KeyMaterial = ""
	if out != nil {
		if material == "" {
			return fmt.Errorf("key %s %s, but the verifier returned no key material for %s", resp.Key.Name, verb, out.path)
		}
		k, err := admin.DecodeKey(material)
		if err != nil {
			return err
		}
		defer clear(k)
		if err := out.commit(k); err != nil {
			return fmt.Errorf("key %s version %d was %s, but writing it failed: %w (delete the version with `admin key delete %s --version %d` and try again)",
				resp.Key.Name, resp.Version, verb, err, resp.Key.Name, resp.Version)
		}
	}
	if g.json {
		v := struct {
			*admin.KeyResponse
			KeyFile string `json:"key_file,omitempty"`
		}{resp, ""}
		if out != nil {
			v.KeyFile = out.path
		}
		return g.printJSON(v)
	}
	fmt.Fprintf(g.stdout, "%s key %s (%s-managed), version %d\n", verb, resp.Key.Name, resp.Key.Origin, resp.Version)
	fmt.Fprintf(g.stdout, "release policy sha256 %s\n", resp.Key.ReleasePolicySHA256)
	if out != nil {
		fmt.Fprintf(g.stdout, "key written to %s (mode 0600); keep it secret\n", out.path)
	}
	return nil
}

func readPolicy(path string) (string, error) {
	if path == "" {
		return "", nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("reading the release policy: %w", err)
	}
	return string(b), nil
}

// maxKeyFile bounds a key file (the API accepts at most 1024 bytes).
const maxKeyFile = 1024

// readKeyFile reads key material from a regular file that only its owner
// can read.
func readKeyFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading the key file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("reading the key file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("key file %s is not a regular file", path)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("key file %s has mode %04o: it must be readable by its owner only (chmod 600)", path, fi.Mode().Perm())
	}
	b, err := io.ReadAll(io.LimitReader(f, maxKeyFile+1))
	if err != nil {
		return nil, fmt.Errorf("reading the key file: %w", err)
	}
	if len(b) > maxKeyFile {
		clear(b)
		return nil, fmt.Errorf("key file %s is larger than %d bytes", path, maxKeyFile)
	}
	return b, nil
}

// keyFileWriter writes a returned key: the temporary file (0600, same
// directory) exists before the request, so that a key is not created when
// it could not be written; commit links it into place.
type keyFileWriter struct {
	path string
	tmp  *os.File
	done bool
}

func newKeyFileWriter(path string) (*keyFileWriter, error) {
	if _, err := os.Lstat(path); err == nil {
		return nil, fmt.Errorf("--return-key-file %s exists: it is never replaced", path)
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("--return-key-file: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return nil, fmt.Errorf("--return-key-file: %w", err)
	}
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return nil, fmt.Errorf("--return-key-file: %w", err)
	}
	return &keyFileWriter{path: path, tmp: tmp}, nil
}

func (w *keyFileWriter) commit(key []byte) error {
	if _, err := w.tmp.Write(key); err != nil {
		return err
	}
	if err := w.tmp.Sync(); err != nil {
		return err
	}
	if err := w.tmp.Close(); err != nil {
		return err
	}
	// A link, unlike a rename, never replaces a file that appeared since.
	if err := os.Link(w.tmp.Name(), w.path); err != nil {
		return err
	}
	w.done = true
	os.Remove(w.tmp.Name())
	if d, err := os.Open(filepath.Dir(w.path)); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// abort removes the temporary file unless the key was committed.
func (w *keyFileWriter) abort() {
	if w.done {
		return
	}
	w.tmp.Close()
	os.Remove(w.tmp.Name())
}

func policyCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "policy", Short: "Load appraisal policies"}
	var kind, file string
	load := &cobra.Command{
		Use:   "load --kind KIND --file FILE",
		Short: "Make FILE the appraisal policy of a TEE kind (stored; every replica uses it)",
		Long: `Make FILE the appraisal policy of a TEE kind (sev-snp, tdx or sim-sev-snp). The
policy must compile and declare the kind; it is stored, used at once by this
verifier and by the other replicas sharing the store at their next poll
(30 s), and it stays in force over the --policy files across restarts.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			src, err := os.ReadFile(file)
			if err != nil {
				return err
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			resp, err := c.LoadPolicy(cmd.Context(), kind, src)
			if err != nil {
				return err
			}
			if g.json {
				return g.printJSON(resp)
			}
			fmt.Fprintf(g.stdout, "policy %s (sha256 %s) now appraises %s\nkinds with a policy: %s\n",
				resp.ID, resp.SHA256, resp.Kind, strings.Join(resp.Kinds, ", "))
			return nil
		},
	}
	load.Flags().StringVar(&kind, "kind", "", "TEE kind: sev-snp, tdx or sim-sev-snp (required)")
	load.Flags().StringVar(&file, "file", "", "policy file (Rego v1) (required)")
	_ = load.MarkFlagRequired("kind")
	_ = load.MarkFlagRequired("file")
	cmd.AddCommand(load)
	return cmd
}

func referenceCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "reference", Short: "Load reference values"}
	var file string
	load := &cobra.Command{
		Use:   "load --file FILE",
		Short: "Make FILE the reference values (stored; every replica uses them)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			content, err := os.ReadFile(file)
			if err != nil {
				return err
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			resp, err := c.LoadReferenceValues(cmd.Context(), content)
			if err != nil {
				return err
			}
			if g.json {
				return g.printJSON(resp)
			}
			fmt.Fprintf(g.stdout, "reference values loaded (sha256 %s)\n", resp.SHA256)
			return nil
		},
	}
	load.Flags().StringVar(&file, "file", "", "reference values file (JSON, \"version\": 1) (required)")
	_ = load.MarkFlagRequired("file")
	cmd.AddCommand(load)
	return cmd
}

func auditCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "audit", Short: "Read and verify the audit log"}
	var limit int
	var after int64
	list := &cobra.Command{
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
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.ID, e.Time.Format(time.RFC3339), e.Event, e.Outcome,
					dash(e.TEE), dash(key), dash(e.Subject), dash(e.TokenID), strings.Join(e.Reasons, "; "))
			}
			return tw.Flush()
		},
	}
	list.Flags().IntVar(&limit, "limit", 50, "how many entries")
	list.Flags().Int64Var(&after, "after", 0, "list entries after this id (default: the last --limit entries)")

	export := &cobra.Command{
		Use:   "export",
		Short: "Write every audit entry to stdout as JSON lines",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			n, err := c.ExportAudit(cmd.Context(), g.stdout)
			if err != nil {
				return err
			}
			fmt.Fprintf(g.stderr, "exported %d audit entries\n", n)
			return nil
		},
	}

	verify := &cobra.Command{
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
				fmt.Fprintf(g.stdout, "audit log intact: %d entries, head %d sha256 %s\n", rep.Entries, rep.HeadID, rep.HeadSHA256)
			} else {
				fmt.Fprintf(g.stdout, "audit log BROKEN: %d entries read, head %d sha256 %s\n", rep.Entries, rep.HeadID, rep.HeadSHA256)
				for _, p := range rep.Problems {
					fmt.Fprintf(g.stdout, "  at entry %d: %s\n", p.ID, p.Reason)
				}
			}
			if !rep.OK {
				return ExitError{Code: 1}
			}
			return nil
		},
	}
	cmd.AddCommand(list, export, verify)
	return cmd
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// Run is a helper for tests and embedding: it runs the admin command with
// args.
func Run(ctx context.Context, stdout, stderr io.Writer, args ...string) error {
	cmd := Command(stdout, stderr)
	cmd.SetArgs(args)
	cmd.SetOut(stdout)
	cmd.SetErr(stderr)
	cmd.SilenceErrors, cmd.SilenceUsage = true, true
	return cmd.ExecuteContext(ctx)
}
