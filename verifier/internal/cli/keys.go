package cli

import (
	"context"
	"io"
	"log/slog"
	"time"

	"github.com/spf13/cobra"

	"github.com/confidant-cvm/confidant/verifier/internal/server"
	"github.com/confidant-cvm/confidant/verifier/internal/store"
	"github.com/confidant-cvm/confidant/verifier/internal/token"
)

func keysCmd(stdout io.Writer, logger func() (*slog.Logger, error)) *cobra.Command {
	cmd := &cobra.Command{Use: "keys", Short: "Manage the token signing keys in the store"}
	var stateDir, storeURL, kekFile, alg string
	var ttl time.Duration
	kekFD := kekFDFlag(cmd.PersistentFlags())
	open := func(ctx context.Context) (*token.Keys, store.Store, error) {
		log, err := logger()
		if err != nil {
			return nil, nil, err
		}
		kek, err := loadKEK(*kekFD, cmd.PersistentFlags().Changed("kek-file"), log)
		if err != nil {
			return nil, nil, err
		}
		return server.OpenKeys(ctx, server.KeysConfig{StateDir: stateDir, Store: storeURL, KEKFile: kekFile,
			SigningAlg: alg, TokenTTL: ttl, KEK: kek}, log)
	}
	list := func(ctx context.Context, st store.Store) error {
		keys, err := st.SigningKeys(ctx)
		if err != nil {
			return err
		}
		type row struct {
			KID       string     `json:"kid"`
			Alg       string     `json:"alg"`
			CreatedAt time.Time  `json:"created_at"`
			RetiredAt *time.Time `json:"retired_at,omitempty"`
			ExpiresAt *time.Time `json:"expires_at,omitempty"`
		}
		rows := []row{}
		for _, k := range keys {
			r := row{KID: k.KID, Alg: k.Alg, CreatedAt: k.CreatedAt}
			if !k.RetiredAt.IsZero() {
				r.RetiredAt, r.ExpiresAt = &k.RetiredAt, &k.ExpiresAt
			}
			rows = append(rows, r)
		}
		return writeJSON(stdout, rows)
	}
	rotate := &cobra.Command{
		Use:   "rotate",
		Short: "Make a new signing key current now; the previous one stays published until its tokens expire",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			k, st, err := open(cmd.Context())
			if err != nil {
				return err
			}
			defer st.Close()
			if _, err := k.Rotate(cmd.Context()); err != nil {
				return err
			}
			return list(cmd.Context(), st)
		},
	}
	ls := &cobra.Command{
		Use:   "list",
		Short: "List the signing keys (creating the first one if there is none)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, st, err := open(cmd.Context())
			if err != nil {
				return err
			}
			defer st.Close()
			return list(cmd.Context(), st)
		},
	}
	pf := cmd.PersistentFlags()
	pf.StringVar(&stateDir, "state-dir", server.DefaultStateDir, "state directory")
	pf.StringVar(&storeURL, "store", "", "store URL: sqlite:PATH or postgres://... (default: sqlite:<state-dir>/verifier.db)")
	pf.StringVar(&kekFile, "kek-file", "", "key-encryption key file (default: <state-dir>/signing.kek)")
	pf.StringVar(&alg, "signing-alg", token.ES256, "signing algorithm of new keys: ES256 or ES384")
	pf.DurationVar(&ttl, "token-ttl", token.DefaultTTL, "token lifetime of the servers (how long a retired key stays published)")
	cmd.AddCommand(rotate, ls)
	return cmd
}
