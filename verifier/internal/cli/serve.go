package cli

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/confidant-cvm/confidant/verifier/internal/api"
	"github.com/confidant-cvm/confidant/verifier/internal/attest"
	"github.com/confidant-cvm/confidant/verifier/internal/server"
)

// serveFlag binds one serve flag to one field of server.Config: the flag
// is the field's yaml key with '-' for '_'.
type serveFlag struct {
	name, usage string
	// field returns a pointer to the field in c: *string, *[]string,
	// *bool, *int, *int64, *float64 or *time.Duration.
	field func(c *server.Config) any
}

// serveFlagTable is every serve flag that sets a config key; a test checks
// that each key of server.Config has its entry.
func serveFlagTable() []serveFlag {
	return []serveFlag{
		{"listen", "address to serve on", func(c *server.Config) any { return &c.Listen }},
		{"state-dir", "state directory (default store and KEK)", func(c *server.Config) any { return &c.StateDir }},
		{"store", "store URL: sqlite:PATH or postgres://... (default: sqlite:<state-dir>/verifier.db)", func(c *server.Config) any { return &c.Store }},
		{"kek-file", "key-encryption key file of the signing, release and nonce keys, kept outside the store; created if missing (default: <state-dir>/signing.kek; see also --kek-fd)", func(c *server.Config) any { return &c.KEKFile }},
		{"admin-listen", "admin API: unix:PATH, tcp://HOST:PORT (mutual TLS) or none (default: unix:<state-dir>/admin.sock)", func(c *server.Config) any { return &c.AdminListen }},
		{"admin-tls-cert", "admin TLS certificate (PEM), with --admin-listen tcp://", func(c *server.Config) any { return &c.AdminTLSCert }},
		{"admin-tls-key", "admin TLS key (PEM), with --admin-listen tcp://", func(c *server.Config) any { return &c.AdminTLSKey }},
		{"admin-client-ca", "CA (PEM) of admin client certificates, with --admin-listen tcp://", func(c *server.Config) any { return &c.AdminClientCA }},
		{"release-audience", "aud a token must carry to release a key (default: --audience)", func(c *server.Config) any { return &c.ReleaseAudience }},
		{"policy", "appraisal policy file (Rego); repeat for several TEE kinds", func(c *server.Config) any { return &c.Policies }},
		{"reference-values", "reference values file (JSON)", func(c *server.Config) any { return &c.ReferenceValues }},
		{"sim-root", "trust the simulated TEE root in this certificate file (development only; off by default)", func(c *server.Config) any { return &c.SimRoot }},
		{"tls-cert", "TLS certificate file (PEM)", func(c *server.Config) any { return &c.TLSCert }},
		{"tls-key", "TLS private key file (PEM)", func(c *server.Config) any { return &c.TLSKey }},
		{"insecure-plain-http-any-interface", "DANGEROUS: serve plain HTTP on a non-loopback address", func(c *server.Config) any { return &c.InsecurePlainHTTPAnyInterface }},
		{"issuer", "token issuer URL and discovery base (default: derived from --listen)", func(c *server.Config) any { return &c.Issuer }},
		{"audience", "default token audience", func(c *server.Config) any { return &c.Audience }},
		{"token-ttl", "token lifetime", func(c *server.Config) any { return &c.TokenTTL }},
		{"nonce-ttl", "challenge nonce lifetime", func(c *server.Config) any { return &c.NonceTTL }},
		{"signing-alg", "token signing algorithm: ES256 or ES384", func(c *server.Config) any { return &c.SigningAlg }},
		{"key-rotation", "signing key rotation period (0: only on command)", func(c *server.Config) any { return &c.KeyRotation }},
		{"rate-limit", "POST requests per second per client IP (0: unlimited; guests relayed by one hostd share its IP)", func(c *server.Config) any { return &c.RateLimit }},
		{"burst", "per-client rate limit burst", func(c *server.Config) any { return &c.Burst }},
		{"failure-audit-rate", "audit rows per second per client IP of failed attempts without a genuine nonce or a valid token; the others are counted and summarized", func(c *server.Config) any { return &c.FailureAuditRate }},
		{"failure-audit-burst", "burst of --failure-audit-rate", func(c *server.Config) any { return &c.FailureAuditBurst }},
		{"max-connections", "open connections of the public listener, idle ones included; more wait to be accepted", func(c *server.Config) any { return &c.MaxConnections }},
		{"metrics-listen", "serve /metrics on this HOST:PORT (plain HTTP) instead of the public listener", func(c *server.Config) any { return &c.MetricsListen }},
		{"max-body-bytes", "request body limit", func(c *server.Config) any { return &c.MaxBodyBytes }},
		{"max-in-flight", "attestations and key releases processed at once (default: 2 × GOMAXPROCS)", func(c *server.Config) any { return &c.MaxInFlight }},
		{"max-queue", fmt.Sprintf("attestations and key releases admitted at once, waiting or processed; more are answered 503 overloaded (default: %d)", api.DefaultMaxQueue), func(c *server.Config) any { return &c.MaxQueue }},
		{"queue-timeout", fmt.Sprintf("longest wait for a processing slot before 503 overloaded (default: %v)", api.DefaultQueueTimeout), func(c *server.Config) any { return &c.QueueTimeout }},
		{"snp-fetch-vcek", "fetch missing VCEKs from AMD's KDS (network)", func(c *server.Config) any { return &c.SNPFetchVCEK }},
		{"tdx-fetch-collateral", "fetch TDX TCB collateral from Intel's PCS (network)", func(c *server.Config) any { return &c.TDXFetchCollateral }},
		{"policy-timeout", "longest evaluation of an appraisal or release policy; a policy still running is stopped and the request fails", func(c *server.Config) any { return &c.PolicyTimeout }},
		{"shutdown-timeout", "graceful shutdown limit", func(c *server.Config) any { return &c.ShutdownTimeout }},
	}
}

// flagDefaults are the defaults the serve flags show: server.DefaultConfig,
// with the values its zeros stand for where those are shown.
func flagDefaults() server.Config {
	d := server.DefaultConfig()
	d.FailureAuditRate, d.FailureAuditBurst = attest.DefaultFailureAuditRate, attest.DefaultFailureAuditBurst
	d.MaxBodyBytes = api.DefaultMaxBodyBytes
	return d
}

// serveFlags binds every serve flag of serveFlagTable to a Config; apply
// copies the flags the user set over a config (defaults, or a config file).
func serveFlags(fs *pflag.FlagSet) (apply func(*server.Config), configFile *string) {
	configFile = fs.String("config", "", "YAML config file (keys as in the flags, with _ for -); flags override it")
	f := flagDefaults()
	byName := map[string]serveFlag{}
	for _, sf := range serveFlagTable() {
		byName[sf.name] = sf
		switch p := sf.field(&f).(type) {
		case *string:
			fs.StringVar(p, sf.name, *p, sf.usage)
		case *[]string:
			fs.StringArrayVar(p, sf.name, *p, sf.usage)
		case *bool:
			fs.BoolVar(p, sf.name, *p, sf.usage)
		case *int:
			fs.IntVar(p, sf.name, *p, sf.usage)
		case *int64:
			fs.Int64Var(p, sf.name, *p, sf.usage)
		case *float64:
			fs.Float64Var(p, sf.name, *p, sf.usage)
		case *time.Duration:
			fs.DurationVar(p, sf.name, *p, sf.usage)
		default:
			panic(fmt.Sprintf("serve flag --%s: field of type %T", sf.name, p))
		}
	}
	apply = func(c *server.Config) {
		fs.Visit(func(fl *pflag.Flag) {
			if sf, ok := byName[fl.Name]; ok {
				copyField(sf.field(c), sf.field(&f))
			}
		})
	}
	return apply, configFile
}

// copyField sets *dst to *src; both are pointers of one type from a
// serveFlag's field.
func copyField(dst, src any) {
	switch d := dst.(type) {
	case *string:
		*d = *src.(*string)
	case *[]string:
		*d = *src.(*[]string)
	case *bool:
		*d = *src.(*bool)
	case *int:
		*d = *src.(*int)
	case *int64:
		*d = *src.(*int64)
	case *float64:
		*d = *src.(*float64)
	case *time.Duration:
		*d = *src.(*time.Duration)
	}
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
		reload, stop := hangups(ctx)
		defer stop()
		return s.Run(ctx, reload)
	}
	return cmd
}

// hangups turns SIGHUP into values on reload until ctx ends; stop stops
// the signal's delivery.
func hangups(ctx context.Context) (reload <-chan struct{}, stop func()) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	ch := make(chan struct{})
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				select {
				case ch <- struct{}{}:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return ch, func() { signal.Stop(hup) }
}
