package admincli

import (
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	adminapi "github.com/confidant-cvm/confidant/shared/api/admin"
	"github.com/confidant-cvm/confidant/shared/keyfile"
	"github.com/confidant-cvm/confidant/shared/termsafe"
	"github.com/confidant-cvm/confidant/verifier/internal/adminclient"
	"github.com/spf13/cobra"
)

func keyCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "key", Short: "Manage release keys"}
	cmd.AddCommand(keyCreateCmd(g), keyImportCmd(g), keyRotateCmd(g), keyDeleteCmd(g), keyListCmd(g), keyShowCmd(g), keySetPolicyCmd(g))
	return cmd
}

func keyCreateCmd(g *globals) *cobra.Command {
	var policyFile, returnFile string
	cmd := &cobra.Command{
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
			var out *keyfile.Writer
			if returnFile != "" {
				if out, err = newKeyFileWriter(returnFile); err != nil {
					return err
				}
				defer out.Abort()
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			resp, err := c.CreateKey(cmd.Context(), adminclient.CreateKeyRequest{Name: args[0], ReleasePolicy: policy, ReturnKey: out != nil})
			if err != nil {
				return err
			}
			return g.keyResult(resp, out, "created")
		},
	}
	cmd.Flags().StringVar(&policyFile, "release-policy", "", "release policy file (Rego); default: the default policy")
	cmd.Flags().StringVar(&returnFile, "return-key-file", "", "write the generated key to this new file (0600)")
	return cmd
}

func keyImportCmd(g *globals) *cobra.Command {
	var policyFile, keyFile string
	cmd := &cobra.Command{
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
	cmd.Flags().StringVar(&keyFile, "key-file", "", "the key: raw bytes, mode 0600 (required)")
	cmd.Flags().StringVar(&policyFile, "release-policy", "", "release policy file (Rego); default: the default policy")
	_ = cmd.MarkFlagRequired("key-file")
	return cmd
}

func keyRotateCmd(g *globals) *cobra.Command {
	var returnFile, keyFile string
	cmd := &cobra.Command{
		Use:   "rotate NAME [--return-key-file OUT | --key-file F]",
		Short: "Add a version to a key; older versions stay releasable until deleted",
		Long: `Add a version to a key and make it the latest. A platform-managed key gets 32
new random bytes (written to --return-key-file OUT when given); a
customer-managed key needs the new key in --key-file. Older versions stay
releasable (by version) until they are deleted, so disks can be re-keyed.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := adminclient.RotateKeyRequest{}
			if keyFile != "" && returnFile != "" {
				return errors.New("give --key-file (customer-managed key) or --return-key-file (platform-managed key), not both")
			}
			if keyFile != "" {
				material, err := readKeyFile(keyFile)
				if err != nil {
					return err
				}
				defer clear(material)
				req.KeyMaterial = adminapi.EncodeKey(material)
			}
			var out *keyfile.Writer
			if returnFile != "" {
				var err error
				if out, err = newKeyFileWriter(returnFile); err != nil {
					return err
				}
				defer out.Abort()
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
	cmd.Flags().StringVar(&returnFile, "return-key-file", "", "write the new generated key to this new file (0600)")
	cmd.Flags().StringVar(&keyFile, "key-file", "", "the new key of a customer-managed key (mode 0600)")
	return cmd
}

func keyDeleteCmd(g *globals) *cobra.Command {
	var version int
	cmd := &cobra.Command{
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
	cmd.Flags().IntVar(&version, "version", 0, "delete only this version (default: the whole key)")
	return cmd
}

func keyListCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
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
	return cmd
}

func keyShowCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
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
	return cmd
}

func keySetPolicyCmd(g *globals) *cobra.Command {
	var policyFile string
	cmd := &cobra.Command{
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
	cmd.Flags().StringVar(&policyFile, "release-policy", "", "release policy file (Rego) (required)")
	_ = cmd.MarkFlagRequired("release-policy")
	return cmd
}

func versions(k adminclient.Key) string {
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
func (g *globals) keyResult(resp *adminclient.KeyResponse, out *keyfile.Writer, verb string) error {
	material := resp.KeyMaterial
	resp.KeyMaterial = ""
	if out != nil {
		if material == "" {
			return fmt.Errorf("key %s %s, but the verifier returned no key material for %s", resp.Key.Name, verb, out.Path())
		}
		k, err := adminapi.DecodeKey(material)
		if err != nil {
			return err
		}
		defer clear(k)
		if err := out.Commit(k); err != nil {
			return fmt.Errorf("key %s version %d was %s, but writing it failed: %w (delete the version with `admin key delete %s --version %d` and try again)",
				resp.Key.Name, resp.Version, verb, err, resp.Key.Name, resp.Version)
		}
	}
	if g.json {
		v := struct {
			*adminclient.KeyResponse
			KeyFile string `json:"key_file,omitempty"`
		}{resp, ""}
		if out != nil {
			v.KeyFile = out.Path()
		}
		return g.printJSON(v)
	}
	fmt.Fprintf(g.stdout, "%s key %s (%s-managed), version %d\n", verb, esc(resp.Key.Name), esc(resp.Key.Origin), resp.Version)
	fmt.Fprintf(g.stdout, "release policy sha256 %s\n", esc(resp.Key.ReleasePolicySHA256))
	if out != nil {
		fmt.Fprintf(g.stdout, "key written to %s (mode 0600); keep it secret\n", out.Path())
	}
	return nil
}
