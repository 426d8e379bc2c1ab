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

	"github.com/confidant-cvm/confidant/shared/termsafe"
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

// printJSON prints v as indented JSON in pure ASCII (termsafe.JSON):
// encoding/json escapes control characters but writes C1 controls and
// bidi overrides raw.
func (g *globals) printJSON(v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = g.stdout.Write(append(termsafe.JSON(b), '\n'))
	return err
}

// esc escapes text from the verifier (names, digests, reasons) for the
// terminal: the admin API is the verifier's, but what it answers can
// carry what a client sent it.
func esc(s string) string { return termsafe.Escape(s) }

// escapeErrors makes every command's error print escaped (an error answer
// quotes what the verifier was sent); errors.As still finds an ExitError.
func escapeErrors(cmd *cobra.Command) {
	if run := cmd.RunE; run != nil {
		cmd.RunE = func(cmd *cobra.Command, args []string) error { return termsafe.Error(run(cmd, args)) }
	}
	for _, c := range cmd.Commands() {
		escapeErrors(c)
	}
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
	escapeErrors(cmd)
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
				fmt.Fprintf(g.stdout, "deleted key %s (every version)\n", esc(resp.Name))
			} else {
				fmt.Fprintf(g.stdout, "deleted version %d of key %s\n", resp.Version, esc(resp.Name))
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
				fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\n", esc(k.Name), esc(k.Origin), k.LatestVersion, versions(k),
					esc(short(k.ReleasePolicySHA256)), k.UpdatedAt.Format(time.RFC3339))
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
				esc(k.Name), esc(k.Origin), k.LatestVersion, k.CreatedAt.Format(time.RFC3339), k.UpdatedAt.Format(time.RFC3339))
			fmt.Fprintln(g.stdout, "versions:")
			for _, v := range k.Versions {
				fmt.Fprintf(g.stdout, "  %d  created %s  kek %s\n", v.Version, v.CreatedAt.Format(time.RFC3339), esc(v.KEKID))
			}
			fmt.Fprintf(g.stdout, "release policy (sha256 %s):\n%s\n", esc(k.ReleasePolicySHA256),
				termsafe.Text(strings.TrimRight(k.ReleasePolicy, "\n")))
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
			fmt.Fprintf(g.stdout, "release policy of key %s set (sha256 %s)\n", esc(resp.Key.Name), esc(resp.Key.ReleasePolicySHA256))
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
	fmt.Fprintf(g.stdout, "%s key %s (%s-managed), version %d\n", verb, esc(resp.Key.Name), esc(resp.Key.Origin), resp.Version)
	fmt.Fprintf(g.stdout, "release policy sha256 %s\n", esc(resp.Key.ReleasePolicySHA256))
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
				esc(resp.ID), esc(resp.SHA256), esc(resp.Kind), esc(strings.Join(resp.Kinds, ", ")))
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
			fmt.Fprintf(g.stdout, "reference values loaded (sha256 %s)\n", esc(resp.SHA256))
			return nil
		},
	}
	load.Flags().StringVar(&file, "file", "", "reference values file (JSON, \"version\": 1) (required)")
	_ = load.MarkFlagRequired("file")
	cmd.AddCommand(load)
	return cmd
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
