package server

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	base := func() Config {
		c := DefaultConfig()
		c.StateDir = "/tmp/x"
		c.Policies = []string{"p.rego"}
		c.ReferenceValues = "ref.json"
		return c
	}
	tests := map[string]struct {
		edit       func(*Config)
		wantErr    []string
		wantIssuer string
	}{
		"defaults":                {wantIssuer: "http://127.0.0.1:8443"},
		"localhost":               {edit: func(c *Config) { c.Listen = "localhost:9000" }, wantIssuer: "http://localhost:9000"},
		"ipv6 loopback":           {edit: func(c *Config) { c.Listen = "[::1]:9000" }, wantIssuer: "http://[::1]:9000"},
		"plain HTTP on any":       {edit: func(c *Config) { c.Listen = ":8443" }, wantErr: []string{"plain HTTP is served on loopback only"}},
		"plain HTTP on public IP": {edit: func(c *Config) { c.Listen = "192.0.2.1:80" }, wantErr: []string{"loopback only"}},
		"dangerous flag": {edit: func(c *Config) { c.Listen = "0.0.0.0:8080"; c.InsecurePlainHTTPAnyInterface = true },
			wantIssuer: "http://localhost:8080"},
		"TLS on any": {edit: func(c *Config) { c.Listen = ":8443"; c.TLSCert, c.TLSKey = "c", "k" },
			wantIssuer: "https://localhost:8443"},
		"TLS half":        {edit: func(c *Config) { c.TLSCert = "c" }, wantErr: []string{"--tls-cert and --tls-key go together"}},
		"explicit issuer": {edit: func(c *Config) { c.Issuer = "https://verifier.example.com" }, wantIssuer: "https://verifier.example.com"},
		"bad issuer":      {edit: func(c *Config) { c.Issuer = "verifier/" }, wantErr: []string{"--issuer"}},
		"every problem at once": {
			edit: func(c *Config) {
				c.Policies = nil
				c.ReferenceValues = ""
				c.TokenTTL = 0
				c.SigningAlg = "RS256"
				c.NonceTTL = time.Second
			},
			wantErr: []string{"no --policy", "no --reference-values", "--token-ttl", "--signing-alg", "--nonce-ttl"},
		},
		"rotation shorter than TTL": {edit: func(c *Config) { c.KeyRotation = time.Minute }, wantErr: []string{"--key-rotation"}},
		"admission limits":          {edit: func(c *Config) { c.MaxInFlight, c.MaxQueue, c.QueueTimeout = 3, 10, 5*time.Second }, wantIssuer: "http://127.0.0.1:8443"},
		"negative admission limits": {edit: func(c *Config) { c.MaxInFlight, c.MaxQueue = -1, -1 }, wantErr: []string{"max_in_flight and max_queue"}},
		"queue timeout too long":    {edit: func(c *Config) { c.QueueTimeout = time.Minute }, wantErr: []string{"queue_timeout"}},
		"negative queue timeout":    {edit: func(c *Config) { c.QueueTimeout = -time.Second }, wantErr: []string{"queue_timeout"}},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			c := base()
			if tt.edit != nil {
				tt.edit(&c)
			}
			err := c.Validate()
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				if c.Issuer != tt.wantIssuer {
					t.Fatalf("issuer %q, want %q", c.Issuer, tt.wantIssuer)
				}
				if c.Store != "sqlite:/tmp/x/verifier.db" || c.KEKFile != "/tmp/x/signing.kek" {
					t.Fatalf("derived paths %q %q", c.Store, c.KEKFile)
				}
				return
			}
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestLoadConfigFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "c.yaml")
	os.WriteFile(p, []byte("listen: 127.0.0.1:9999\npolicies: [a.rego, b.rego]\ntoken_ttl: 2m\nsim_root: /x.pem\n"), 0o644)
	c, err := LoadConfigFile(p, DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != "127.0.0.1:9999" || len(c.Policies) != 2 || c.TokenTTL != 2*time.Minute || c.SimRoot != "/x.pem" || c.Audience != DefaultAudience {
		t.Fatalf("config: %+v", c)
	}
	os.WriteFile(p, []byte("lisen: x\n"), 0o644)
	if _, err := LoadConfigFile(p, DefaultConfig()); err == nil {
		t.Fatal("unknown key accepted")
	}
}

// TestKEKOption: a KEK given directly (from the environment) is used
// instead of the KEK file, which is then never created.
func TestKEKOption(t *testing.T) {
	dir := t.TempDir()
	cfg := DefaultConfig()
	cfg.StateDir = filepath.Join(dir, "state")
	cfg.Policies = []string{"../../../policies/appraisal/sim_development.rego"}
	cfg.ReferenceValues = "../../../policies/reference-values.example.json"
	cfg.AdminListen = "none"
	ctx := context.Background()
	s, err := New(ctx, cfg, nil, Options{KEK: bytes.Repeat([]byte{1}, 32)})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Release.Create(ctx, "k", nil, false); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if _, err := os.Stat(filepath.Join(cfg.StateDir, "signing.kek")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("KEK file written: %v", err)
	}
	// Another KEK does not open the sealed keys.
	if s, err := New(ctx, cfg, nil, Options{KEK: bytes.Repeat([]byte{2}, 32)}); err == nil {
		s.Close()
		t.Fatal("opened the store with another KEK")
	}
	if _, err := New(ctx, cfg, nil, Options{KEK: []byte("short")}); err == nil {
		t.Fatal("accepted a short KEK")
	}
}
