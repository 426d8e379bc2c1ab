// Command confidant-verifier is Confidant's attestation verifier: it
// challenges guests, appraises their evidence against policies, issues
// signed tokens, publishes its keys and releases keys to attested guests
// (serve), is administered through its admin API (admin), and gives
// security teams the same appraisal offline (appraise, inspect).
package main

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/confidant-cvm/confidant/shared/termsafe"
	"github.com/confidant-cvm/confidant/verifier/internal/admincli"
	"github.com/confidant-cvm/confidant/verifier/internal/api"
	"github.com/confidant-cvm/confidant/verifier/internal/appraise"
	"github.com/confidant-cvm/confidant/verifier/internal/offline"
	"github.com/confidant-cvm/confidant/verifier/internal/server"
	"github.com/confidant-cvm/confidant/verifier/internal/store"
	"github.com/confidant-cvm/confidant/verifier/internal/token"
)

// exitCode ends the program with a status and no further message.
type exitCode int

func (e exitCode) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRoot(os.Stdout, os.Stderr).ExecuteContext(ctx)
	stop()
	var (
		code   exitCode
		status interface{ ExitCode() int }
	)
	switch {
	case err == nil:
	case errors.As(err, &code):
		os.Exit(int(code))
	case errors.As(err, &status):
		os.Exit(status.ExitCode())
	default:
		fmt.Fprintln(os.Stderr, "confidant-verifier:", termsafe.Escape(err.Error()))
		os.Exit(2)
	}
}

func newRoot(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:           "confidant-verifier",
		Short:         "Attestation verifier for Confidant confidential VMs",
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	var logLevel, logFormat string
	root.PersistentFlags().StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn, error")
	root.PersistentFlags().StringVar(&logFormat, "log-format", "text", "log format: text or json")
	logger := func() (*slog.Logger, error) {
		var lvl slog.Level
		if err := lvl.UnmarshalText([]byte(logLevel)); err != nil {
			return nil, fmt.Errorf("--log-level: %w", err)
		}
		opts := &slog.HandlerOptions{Level: lvl, ReplaceAttr: termsafe.ReplaceAttr}
		switch logFormat {
		case "text":
			return slog.New(slog.NewTextHandler(stderr, opts)), nil
		case "json":
			return slog.New(slog.NewJSONHandler(stderr, opts)), nil
		}
		return nil, fmt.Errorf("--log-format %q: want text or json", logFormat)
	}
	root.AddCommand(serveCmd(logger), appraiseCmd(stdout), inspectCmd(stdout), keysCmd(stdout, logger),
		admincli.Command(stdout, stderr))
	return root
}

// serveFlags binds every serve flag to a Config; apply copies the flags the
// user set over a config (defaults, or a config file).
func serveFlags(fs *pflag.FlagSet) (apply func(*server.Config), configFile *string) {
	var f server.Config
	d := server.DefaultConfig()
	configFile = fs.String("config", "", "YAML config file (keys as in the flags, with _ for -); flags override it")
	fs.StringVar(&f.Listen, "listen", d.Listen, "address to serve on")
	fs.StringVar(&f.StateDir, "state-dir", d.StateDir, "state directory (default store and KEK)")
	fs.StringVar(&f.Store, "store", "", "store URL: sqlite:PATH or postgres://... (default: sqlite:<state-dir>/verifier.db)")
	fs.StringVar(&f.KEKFile, "kek-file", "", "key-encryption key file of the signing, release and nonce keys, kept outside the store; created if missing (default: <state-dir>/signing.kek; see also --kek-fd)")
	fs.StringVar(&f.AdminListen, "admin-listen", "", "admin API: unix:PATH, tcp://HOST:PORT (mutual TLS) or none (default: unix:<state-dir>/admin.sock)")
	fs.StringVar(&f.AdminTLSCert, "admin-tls-cert", "", "admin TLS certificate (PEM), with --admin-listen tcp://")
	fs.StringVar(&f.AdminTLSKey, "admin-tls-key", "", "admin TLS key (PEM), with --admin-listen tcp://")
	fs.StringVar(&f.AdminClientCA, "admin-client-ca", "", "CA (PEM) of admin client certificates, with --admin-listen tcp://")
	fs.StringVar(&f.ReleaseAudience, "release-audience", "", "aud a token must carry to release a key (default: --audience)")
	fs.StringArrayVar(&f.Policies, "policy", nil, "appraisal policy file (Rego); repeat for several TEE kinds")
	fs.StringVar(&f.ReferenceValues, "reference-values", "", "reference values file (JSON)")
	fs.StringVar(&f.SimRoot, "sim-root", "", "trust the simulated TEE root in this certificate file (development only; off by default)")
	fs.StringVar(&f.TLSCert, "tls-cert", "", "TLS certificate file (PEM)")
	fs.StringVar(&f.TLSKey, "tls-key", "", "TLS private key file (PEM)")
	fs.BoolVar(&f.InsecurePlainHTTPAnyInterface, "insecure-plain-http-any-interface", false,
		"DANGEROUS: serve plain HTTP on a non-loopback address")
	fs.StringVar(&f.Issuer, "issuer", "", "token issuer URL and discovery base (default: derived from --listen)")
	fs.StringVar(&f.Audience, "audience", d.Audience, "default token audience")
	fs.DurationVar(&f.TokenTTL, "token-ttl", d.TokenTTL, "token lifetime")
	fs.DurationVar(&f.NonceTTL, "nonce-ttl", d.NonceTTL, "challenge nonce lifetime")
	fs.StringVar(&f.SigningAlg, "signing-alg", d.SigningAlg, "token signing algorithm: ES256 or ES384")
	fs.DurationVar(&f.KeyRotation, "key-rotation", d.KeyRotation, "signing key rotation period (0: only on command)")
	fs.Float64Var(&f.RateLimit, "rate-limit", d.RateLimit, "POST requests per second per client IP (0: unlimited; guests relayed by one hostd share its IP)")
	fs.IntVar(&f.Burst, "burst", d.Burst, "per-client rate limit burst")
	fs.Float64Var(&f.FailureAuditRate, "failure-audit-rate", api.DefaultFailureAuditRate, "audit rows per second per client IP of failed attempts without a genuine nonce or a valid token; the others are counted and summarized")
	fs.IntVar(&f.FailureAuditBurst, "failure-audit-burst", api.DefaultFailureAuditBurst, "burst of --failure-audit-rate")
	fs.IntVar(&f.MaxConnections, "max-connections", d.MaxConnections, "open connections of the public listener, idle ones included; more wait to be accepted")
	fs.StringVar(&f.MetricsListen, "metrics-listen", "", "serve /metrics on this HOST:PORT (plain HTTP) instead of the public listener")
	fs.Int64Var(&f.MaxBodyBytes, "max-body-bytes", api.DefaultMaxBodyBytes, "request body limit")
	fs.IntVar(&f.MaxInFlight, "max-in-flight", 0, "attestations and key releases processed at once (default: 2 × GOMAXPROCS)")
	fs.IntVar(&f.MaxQueue, "max-queue", 0, fmt.Sprintf("attestations and key releases admitted at once, waiting or processed; more are answered 503 overloaded (default: %d)", api.DefaultMaxQueue))
	fs.DurationVar(&f.QueueTimeout, "queue-timeout", 0, fmt.Sprintf("longest wait for a processing slot before 503 overloaded (default: %v)", api.DefaultQueueTimeout))
	fs.BoolVar(&f.SNPFetchVCEK, "snp-fetch-vcek", false, "fetch missing VCEKs from AMD's KDS (network)")
	fs.BoolVar(&f.TDXFetchCollateral, "tdx-fetch-collateral", false, "fetch TDX TCB collateral from Intel's PCS (network)")
	fs.DurationVar(&f.PolicyTimeout, "policy-timeout", d.PolicyTimeout, "longest evaluation of an appraisal or release policy; a policy still running is stopped and the request fails")
	fs.DurationVar(&f.ShutdownTimeout, "shutdown-timeout", d.ShutdownTimeout, "graceful shutdown limit")
	apply = func(c *server.Config) {
		fs.Visit(func(fl *pflag.Flag) {
			switch fl.Name {
			case "listen":
				c.Listen = f.Listen
			case "state-dir":
				c.StateDir = f.StateDir
			case "store":
				c.Store = f.Store
			case "kek-file":
				c.KEKFile = f.KEKFile
			case "admin-listen":
				c.AdminListen = f.AdminListen
			case "admin-tls-cert":
				c.AdminTLSCert = f.AdminTLSCert
			case "admin-tls-key":
				c.AdminTLSKey = f.AdminTLSKey
			case "admin-client-ca":
				c.AdminClientCA = f.AdminClientCA
			case "release-audience":
				c.ReleaseAudience = f.ReleaseAudience
			case "policy":
				c.Policies = f.Policies
			case "reference-values":
				c.ReferenceValues = f.ReferenceValues
			case "sim-root":
				c.SimRoot = f.SimRoot
			case "tls-cert":
				c.TLSCert = f.TLSCert
			case "tls-key":
				c.TLSKey = f.TLSKey
			case "insecure-plain-http-any-interface":
				c.InsecurePlainHTTPAnyInterface = f.InsecurePlainHTTPAnyInterface
			case "issuer":
				c.Issuer = f.Issuer
			case "audience":
				c.Audience = f.Audience
			case "token-ttl":
				c.TokenTTL = f.TokenTTL
			case "nonce-ttl":
				c.NonceTTL = f.NonceTTL
			case "signing-alg":
				c.SigningAlg = f.SigningAlg
			case "key-rotation":
				c.KeyRotation = f.KeyRotation
			case "rate-limit":
				c.RateLimit = f.RateLimit
			case "burst":
				c.Burst = f.Burst
			case "failure-audit-rate":
				c.FailureAuditRate = f.FailureAuditRate
			case "failure-audit-burst":
				c.FailureAuditBurst = f.FailureAuditBurst
			case "max-connections":
				c.MaxConnections = f.MaxConnections
			case "metrics-listen":
				c.MetricsListen = f.MetricsListen
			case "max-body-bytes":
				c.MaxBodyBytes = f.MaxBodyBytes
			case "max-in-flight":
				c.MaxInFlight = f.MaxInFlight
			case "max-queue":
				c.MaxQueue = f.MaxQueue
			case "queue-timeout":
				c.QueueTimeout = f.QueueTimeout
			case "snp-fetch-vcek":
				c.SNPFetchVCEK = f.SNPFetchVCEK
			case "tdx-fetch-collateral":
				c.TDXFetchCollateral = f.TDXFetchCollateral
			case "policy-timeout":
				c.PolicyTimeout = f.PolicyTimeout
			case "shutdown-timeout":
				c.ShutdownTimeout = f.ShutdownTimeout
			}
		})
	}
	return apply, configFile
}

func serveCmd(logger func() (*slog.Logger, error)) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve the attestation API",
		Long: `Serve the attestation API: POST /v1/challenge, POST /v1/attest,
POST /v1/keys/{name}/release, GET /v1/jwks, GET /.well-known/openid-configuration,
/healthz, /readyz and /metrics (on its own listener with --metrics-listen);
and the admin API on its own listener
(default: the unix socket <state-dir>/admin.sock, see "admin --help").

Without --tls-cert/--tls-key it serves plain HTTP on a loopback address only.
SIGHUP (or a change of the files) reloads the policies and reference values.`,
		Args: cobra.NoArgs,
	}
	apply, configFile := serveFlags(cmd.Flags())
	kekFD := kekFDFlag(cmd.Flags())
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		log, err := logger()
		if err != nil {
			return err
		}
		cfg := server.DefaultConfig()
		if *configFile != "" {
			if cfg, err = server.LoadConfigFile(*configFile, cfg); err != nil {
				return err
			}
		}
		apply(&cfg)
		ctx := cmd.Context()
		kek, err := loadKEK(*kekFD, cmd.Flags().Changed("kek-file"), log)
		if err != nil {
			return err
		}
		s, err := server.Start(ctx, cfg, log, server.Options{KEK: kek})
		if err != nil {
			return err
		}
		defer s.Close()
		hup := make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		defer signal.Stop(hup)
		reload := make(chan struct{})
		go func() {
			for {
				select {
				case <-ctx.Done():
					return
				case <-hup:
					select {
					case reload <- struct{}{}:
					case <-ctx.Done():
						return
					}
				}
			}
		}()
		return s.Run(ctx, reload)
	}
	return cmd
}

func parseNow(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("--now: %w", err)
	}
	return t, nil
}

func readCert(path string) (*x509.Certificate, error) {
	if path == "" {
		return nil, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return server.ParseCertificate(b)
}

// writeJSON prints v as indented JSON in pure ASCII (termsafe.JSON): the
// reasons come from evidence, and encoding/json writes C1 controls and bidi
// overrides raw.
func writeJSON(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = w.Write(append(termsafe.JSON(b), '\n'))
	return err
}

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
				code := "appraisal_failed"
				if errors.Is(err, appraise.ErrDenied) {
					code = api.CodeDenied
				}
				if werr := writeJSON(stdout, api.ErrorBody{Error: code, Reasons: appraise.Reasons(err)}); werr != nil {
					return werr
				}
				return exitCode(1)
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
				return exitCode(1)
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
