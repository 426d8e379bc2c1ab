package server

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/confidant-cvm/confidant/verifier/internal/api"
	"github.com/confidant-cvm/confidant/verifier/internal/challenge"
	"github.com/confidant-cvm/confidant/verifier/internal/policy"
	"github.com/confidant-cvm/confidant/verifier/internal/token"
)

// Defaults of Config.
const (
	DefaultListen      = "127.0.0.1:8443"
	DefaultStateDir    = "/var/lib/confidant-verifier"
	DefaultAudience    = "confidant"
	DefaultKeyRotation = 7 * 24 * time.Hour
	DefaultShutdown    = 15 * time.Second
	// DefaultRateLimit is off: overload is the admission queue's business
	// (MaxInFlight, MaxQueue, QueueTimeout), which serves a burst in turn
	// instead of refusing it. DefaultBurst is the per-client burst once a
	// rate limit is set.
	DefaultRateLimit = 0
	DefaultBurst     = 20
	// DefaultMaxConnections caps the open connections of the public
	// listener (idle keep-alives included); more wait in the kernel's
	// accept queue.
	DefaultMaxConnections = 4096
)

// Config is the serve command's configuration. A YAML file (field names as
// in the yaml tags) is merged under the command-line flags.
type Config struct {
	// Listen is the address to serve on.
	Listen string `yaml:"listen"`
	// StateDir holds the default store and KEK files.
	StateDir string `yaml:"state_dir"`
	// Store is the store URL; empty means sqlite:<StateDir>/verifier.db.
	Store string `yaml:"store"`
	// KEKFile holds the key-encryption key of the signing keys and of the
	// release keys; empty means <StateDir>/signing.kek. Keep it outside the
	// store (and its backups); replicas sharing a store share it.
	KEKFile string `yaml:"kek_file"`
	// AdminListen is where the admin API listens: "unix:PATH" (or
	// "unix://PATH"), "tcp://HOST:PORT" (mutual TLS, with the three
	// AdminTLS files), or "none". Empty means unix:<StateDir>/admin.sock.
	AdminListen string `yaml:"admin_listen"`
	// AdminTLSCert and AdminTLSKey are the admin listener's certificate
	// and key (PEM); AdminClientCA the CA (PEM) that issues admin client
	// certificates. TCP only, and then required.
	AdminTLSCert  string `yaml:"admin_tls_cert"`
	AdminTLSKey   string `yaml:"admin_tls_key"`
	AdminClientCA string `yaml:"admin_client_ca"`
	// ReleaseAudience is the aud a token must carry to release a key;
	// empty means Audience.
	ReleaseAudience string `yaml:"release_audience"`
	// Policies are the appraisal policy files.
	Policies []string `yaml:"policies"`
	// ReferenceValues is the reference values file.
	ReferenceValues string `yaml:"reference_values"`
	// SimRoot is the simulated TEE root certificate (PEM); empty: the
	// simulated TEE is not trusted.
	SimRoot string `yaml:"sim_root"`
	// TLSCert and TLSKey are PEM files; both or neither.
	TLSCert string `yaml:"tls_cert"`
	TLSKey  string `yaml:"tls_key"`
	// InsecurePlainHTTPAnyInterface allows plain HTTP on a non-loopback
	// address. Dangerous: tokens travel in clear.
	InsecurePlainHTTPAnyInterface bool `yaml:"insecure_plain_http_any_interface"`
	// Issuer is the iss claim and the discovery base URL; empty means
	// derived from Listen.
	Issuer string `yaml:"issuer"`
	// Audience is the default aud claim.
	Audience string `yaml:"audience"`
	// TokenTTL is the token lifetime.
	TokenTTL time.Duration `yaml:"token_ttl"`
	// NonceTTL is how long a challenge nonce stays redeemable.
	NonceTTL time.Duration `yaml:"nonce_ttl"`
	// SigningAlg is ES256 or ES384.
	SigningAlg string `yaml:"signing_alg"`
	// KeyRotation is the signing key rotation period; 0 disables scheduled
	// rotation.
	KeyRotation time.Duration `yaml:"key_rotation"`
	// RateLimit (requests/second) and Burst bound the POST requests of
	// each client (remote IP); 0 is unlimited, the default. Clients behind
	// one address (a NAT, a proxy, guests relayed by one hostd) share one
	// bucket.
	RateLimit float64 `yaml:"rate_limit"`
	Burst     int     `yaml:"burst"`
	// FailureAuditRate (rows/second) and FailureAuditBurst bound, per
	// client, the audit rows of failed attempts that prove nothing (no
	// genuine nonce, no valid token); the others are summarized. 0 means
	// attest.DefaultFailureAuditRate, attest.DefaultFailureAuditBurst.
	FailureAuditRate  float64 `yaml:"failure_audit_rate"`
	FailureAuditBurst int     `yaml:"failure_audit_burst"`
	// MaxConnections caps the public listener's open connections; 0 means
	// DefaultMaxConnections.
	MaxConnections int `yaml:"max_connections"`
	// MetricsListen, when set, serves GET /metrics (plain HTTP) on this
	// address, and no longer on the public listener.
	MetricsListen string `yaml:"metrics_listen"`
	// MaxBodyBytes caps request bodies.
	MaxBodyBytes int64 `yaml:"max_body_bytes"`
	// MaxInFlight bounds the attestations and key releases processed at
	// once; 0 means api.DefaultMaxInFlight() (2 × GOMAXPROCS). MaxQueue
	// bounds those admitted at once, waiting for a slot or processing (more
	// are refused at once); 0 means api.DefaultMaxQueue. QueueTimeout bounds
	// the wait for a slot; 0 means api.DefaultQueueTimeout. Refusals are 503
	// overloaded with Retry-After, which agents retry.
	MaxInFlight  int           `yaml:"max_in_flight"`
	MaxQueue     int           `yaml:"max_queue"`
	QueueTimeout time.Duration `yaml:"queue_timeout"`
	// SNPFetchVCEK fetches missing VCEKs from AMD's KDS (network).
	SNPFetchVCEK bool `yaml:"snp_fetch_vcek"`
	// TDXFetchCollateral fetches TCB collateral from Intel's PCS (network);
	// without it TDX TCB status is "unknown".
	TDXFetchCollateral bool `yaml:"tdx_fetch_collateral"`
	// PolicyTimeout bounds one evaluation of an appraisal or a release
	// policy; a policy still running then is stopped and the request fails
	// (500 policy_error), it is never allowed. 0 means policy.DefaultTimeout.
	PolicyTimeout time.Duration `yaml:"policy_timeout"`
	// ShutdownTimeout bounds the graceful shutdown.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		Listen:          DefaultListen,
		StateDir:        DefaultStateDir,
		Audience:        DefaultAudience,
		TokenTTL:        token.DefaultTTL,
		NonceTTL:        challenge.DefaultTTL,
		SigningAlg:      token.ES256,
		KeyRotation:     DefaultKeyRotation,
		RateLimit:       DefaultRateLimit,
		Burst:           DefaultBurst,
		MaxConnections:  DefaultMaxConnections,
		PolicyTimeout:   policy.DefaultTimeout,
		ShutdownTimeout: DefaultShutdown,
	}
}

// LoadConfigFile reads a YAML config file over base; unknown keys are
// errors.
func LoadConfigFile(path string, base Config) (Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return base, fmt.Errorf("reading config: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	cfg := base
	if err := dec.Decode(&cfg); err != nil {
		return base, fmt.Errorf("parsing config %s: %w", path, err)
	}
	return cfg, nil
}

// TLS reports whether the config serves HTTPS.
func (c *Config) TLS() bool { return c.TLSCert != "" }

// Validate fills derived defaults and reports every problem at once.
func (c *Config) Validate() error {
	var errs []error
	if c.StateDir == "" {
		errs = append(errs, errors.New("--state-dir is empty"))
	}
	if c.Store == "" {
		c.Store = "sqlite:" + filepath.Join(c.StateDir, "verifier.db")
	}
	if c.KEKFile == "" {
		c.KEKFile = filepath.Join(c.StateDir, "signing.kek")
	}
	if c.AdminListen == "" {
		c.AdminListen = "unix:" + filepath.Join(c.StateDir, DefaultAdminSocket)
	}
	if c.ReleaseAudience == "" {
		c.ReleaseAudience = c.Audience
	}
	errs = append(errs, c.validateAdmin()...)
	if len(c.Policies) == 0 {
		errs = append(errs, errors.New("no --policy given"))
	}
	if c.ReferenceValues == "" {
		errs = append(errs, errors.New("no --reference-values given"))
	}
	errs = append(errs, c.validateListen()...)
	if c.Audience == "" {
		errs = append(errs, errors.New("--audience is empty"))
	}
	if c.TokenTTL <= 0 || c.TokenTTL > 24*time.Hour {
		errs = append(errs, fmt.Errorf("--token-ttl %v: want (0, 24h]", c.TokenTTL))
	}
	if c.NonceTTL < 10*time.Second || c.NonceTTL > time.Hour {
		errs = append(errs, fmt.Errorf("--nonce-ttl %v: want [10s, 1h]", c.NonceTTL))
	}
	if c.SigningAlg != token.ES256 && c.SigningAlg != token.ES384 {
		errs = append(errs, fmt.Errorf("--signing-alg %q: want ES256 or ES384", c.SigningAlg))
	}
	if c.KeyRotation < 0 || (c.KeyRotation > 0 && c.KeyRotation < c.TokenTTL) {
		errs = append(errs, fmt.Errorf("--key-rotation %v: want 0 (off) or at least the token TTL", c.KeyRotation))
	}
	errs = append(errs, c.validateLimits()...)
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("invalid configuration:\n%w", err)
	}
	return nil
}

// validateListen checks the listen address and the TLS pair, and fills
// the default issuer from them.
func (c *Config) validateListen() []error {
	var errs []error
	if (c.TLSCert == "") != (c.TLSKey == "") {
		errs = append(errs, errors.New("--tls-cert and --tls-key go together"))
	}
	host, port, err := net.SplitHostPort(c.Listen)
	if err != nil {
		errs = append(errs, fmt.Errorf("--listen %q: %w", c.Listen, err))
	} else if !c.TLS() && !isLoopback(host) && !c.InsecurePlainHTTPAnyInterface {
		errs = append(errs, fmt.Errorf("--listen %q: plain HTTP is served on loopback only; give --tls-cert/--tls-key (or, dangerously, --insecure-plain-http-any-interface)", c.Listen))
	}
	if c.Issuer == "" && err == nil {
		scheme := "http"
		if c.TLS() {
			scheme = "https"
		}
		if host == "" || host == "0.0.0.0" || host == "::" {
			host = "localhost"
		}
		c.Issuer = scheme + "://" + net.JoinHostPort(host, port)
	}
	if u, err := url.Parse(c.Issuer); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" ||
		u.RawQuery != "" || u.Fragment != "" || strings.HasSuffix(c.Issuer, "/") {
		errs = append(errs, fmt.Errorf("--issuer %q: want an http(s) URL without query, fragment or trailing slash", c.Issuer))
	}
	return errs
}

// validateLimits checks the rate, connection, body, queue and timeout
// limits.
func (c *Config) validateLimits() []error {
	var errs []error
	if c.RateLimit < 0 || c.Burst < 0 {
		errs = append(errs, errors.New("--rate-limit and --burst must not be negative"))
	}
	if c.MaxConnections < 0 || c.FailureAuditRate < 0 || c.FailureAuditBurst < 0 {
		errs = append(errs, errors.New("--max-connections, --failure-audit-rate and --failure-audit-burst must not be negative"))
	}
	errs = append(errs, c.validateMetrics()...)
	if c.MaxBodyBytes < 0 {
		errs = append(errs, errors.New("--max-body-bytes must not be negative"))
	}
	if c.MaxInFlight < 0 || c.MaxQueue < 0 {
		errs = append(errs, errors.New("max_in_flight and max_queue must not be negative"))
	}
	if c.QueueTimeout < 0 || c.QueueTimeout > maxQueueTimeout {
		errs = append(errs, fmt.Errorf("queue_timeout %v: want [0, %v] (a queued request must still be answered within the write timeout)", c.QueueTimeout, maxQueueTimeout))
	}
	if c.PolicyTimeout < 0 || (c.PolicyTimeout > 0 && c.PolicyTimeout < time.Millisecond) || c.PolicyTimeout > maxPolicyTimeout {
		errs = append(errs, fmt.Errorf("--policy-timeout %v: want 0 (%v) or [1ms, %v]", c.PolicyTimeout, policy.DefaultTimeout, maxPolicyTimeout))
	}
	if c.ShutdownTimeout <= 0 {
		errs = append(errs, errors.New("--shutdown-timeout must be positive"))
	}
	return errs
}

// maxPolicyTimeout is the longest --policy-timeout: a policy is a
// decision over a few kilobytes of claims, which takes microseconds.
const maxPolicyTimeout = 10 * time.Second

// writeTimeout bounds a response, from the end of its request's headers.
const writeTimeout = 60 * time.Second

// maxQueueTimeout leaves a request that waited its longest in the queue
// time to send its body, be processed and be answered.
const maxQueueTimeout = writeTimeout - api.BodyReadTimeout - 10*time.Second

// DefaultAdminSocket is the admin socket's name in the state directory.
const DefaultAdminSocket = "admin.sock"

// maxSocketPath is the longest unix socket path Linux accepts.
const maxSocketPath = 107

// AdminAddress parses AdminListen into a network ("unix" or "tcp", or ""
// for none) and an address.
func (c *Config) AdminAddress() (network, addr string, err error) {
	switch {
	case c.AdminListen == "none":
		return "", "", nil
	case strings.HasPrefix(c.AdminListen, "unix://"):
		network, addr = "unix", strings.TrimPrefix(c.AdminListen, "unix://")
	case strings.HasPrefix(c.AdminListen, "unix:"):
		network, addr = "unix", strings.TrimPrefix(c.AdminListen, "unix:")
	case strings.HasPrefix(c.AdminListen, "tcp://"):
		network, addr = "tcp", strings.TrimPrefix(c.AdminListen, "tcp://")
	default:
		return "", "", fmt.Errorf("--admin-listen %q: want unix:PATH, tcp://HOST:PORT or none", c.AdminListen)
	}
	if addr == "" {
		return "", "", fmt.Errorf("--admin-listen %q: empty address", c.AdminListen)
	}
	return network, addr, nil
}

func (c *Config) validateAdmin() []error {
	network, addr, err := c.AdminAddress()
	if err != nil {
		return []error{err}
	}
	tlsFiles := c.AdminTLSCert != "" || c.AdminTLSKey != "" || c.AdminClientCA != ""
	var errs []error
	switch network {
	case "unix":
		if len(addr) > maxSocketPath {
			errs = append(errs, fmt.Errorf("--admin-listen: socket path %q is longer than %d bytes", addr, maxSocketPath))
		}
		if tlsFiles {
			errs = append(errs, errors.New("--admin-tls-cert, --admin-tls-key and --admin-client-ca go with --admin-listen tcp://"))
		}
	case "tcp":
		if c.AdminTLSCert == "" || c.AdminTLSKey == "" || c.AdminClientCA == "" {
			errs = append(errs, errors.New("--admin-listen tcp:// needs --admin-tls-cert, --admin-tls-key and --admin-client-ca (mutual TLS)"))
		}
		ahost, aport, err := net.SplitHostPort(addr)
		if err != nil {
			errs = append(errs, fmt.Errorf("--admin-listen %q: %w", c.AdminListen, err))
			break
		}
		if host, port, err := net.SplitHostPort(c.Listen); err == nil && port == aport && port != "0" &&
			(host == ahost || unspecified(host) || unspecified(ahost)) {
			errs = append(errs, fmt.Errorf("--admin-listen %q overlaps --listen %q: the admin API never shares the public port", c.AdminListen, c.Listen))
		}
	default:
		if tlsFiles {
			errs = append(errs, errors.New("--admin-tls-* given but the admin API is off"))
		}
	}
	return errs
}

// validateMetrics checks MetricsListen: a host:port that is not the public
// or the admin listener's.
func (c *Config) validateMetrics() []error {
	if c.MetricsListen == "" {
		return nil
	}
	mhost, mport, err := net.SplitHostPort(c.MetricsListen)
	if err != nil {
		return []error{fmt.Errorf("--metrics-listen %q: %w", c.MetricsListen, err)}
	}
	overlaps := func(addr string) bool {
		host, port, err := net.SplitHostPort(addr)
		return err == nil && port == mport && port != "0" && (host == mhost || unspecified(host) || unspecified(mhost))
	}
	if overlaps(c.Listen) {
		return []error{fmt.Errorf("--metrics-listen %q overlaps --listen %q", c.MetricsListen, c.Listen)}
	}
	if network, addr, err := c.AdminAddress(); err == nil && network == "tcp" && overlaps(addr) {
		return []error{fmt.Errorf("--metrics-listen %q overlaps --admin-listen %q", c.MetricsListen, c.AdminListen)}
	}
	return nil
}

func unspecified(host string) bool {
	if host == "" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsUnspecified()
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
