package config

import (
	"fmt"
	"net/netip"
	"net/url"
	"path"
	"strings"
	"time"

	"github.com/confidant-cvm/confidant/shared/agentconfig"
	"github.com/confidant-cvm/confidant/shared/api"
)

// problems collects every configuration problem, each matching ErrInvalid,
// in the order they are found.
type problems []error

func (p *problems) add(format string, args ...any) {
	*p = append(*p, fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...))
}

// validate turns the decoded file into a Config, one section at a time.
func validate(f *agentconfig.File) (*Config, []error) {
	var p problems
	cfg := fromFile(f)
	validateVerifier(&p, f, cfg)
	validateDisks(&p, cfg)
	validateDevices(&p, f, cfg)
	validateNetwork(&p, f, cfg)
	validateRun(&p, f, cfg)
	return cfg, p
}

// fromFile copies the file's values that need no parsing into a Config.
func fromFile(f *agentconfig.File) *Config {
	return &Config{
		CAFile:         f.Verifier.CAFile,
		AllowPlainHTTP: f.Verifier.AllowPlainHTTP,
		TokenAudience:  f.Verifier.TokenAudience,
		KeyName:        f.KeyName,
		OSDiskUUID:     strings.ToLower(f.OSDisk.LUKSUUID),
		RootMount:      f.OSDisk.Mount,
		TempDevice:     f.TempDisk.Device,
		TempMount:      f.TempDisk.Mount,
		TempAllowReset: f.TempDisk.AllowReset,
		TempSwapSize:   int64(f.TempDisk.SwapSize),
		TempMkfs:       f.TempDisk.Mkfs,
		TempMkswap:     f.TempDisk.Mkswap,
		TEE:            TEE(f.TEE),
		SimPort:        f.SimPort,
		Interface:      f.Network.Interface,
		RetryBudget:    f.RetryBudget,
		DeviceTimeout:  f.DeviceTimeout,
		OnFailure:      OnFailure(f.OnFailure),
		DebugShell:     f.DebugShell,
		ModulesFile:    f.ModulesFile,
		Modules:        f.Modules,
	}
}

// validateVerifier checks the verifier section and the key name, and sets
// cfg.VerifierURL.
func validateVerifier(p *problems, f *agentconfig.File, cfg *Config) {
	switch u, err := url.Parse(f.Verifier.URL); {
	case f.Verifier.URL == "":
		p.add("verifier.url is required")
	case err != nil:
		p.add("verifier.url: %v", err)
	case u.Host == "" || u.Opaque != "" || u.User != nil || u.RawQuery != "" || u.Fragment != "":
		p.add("verifier.url %q: want scheme://host[:port][/path]", f.Verifier.URL)
	case u.Scheme == "https":
		cfg.VerifierURL = u
	case u.Scheme == "http" && f.Verifier.AllowPlainHTTP:
		cfg.VerifierURL = u
	case u.Scheme == "http":
		p.add("verifier.url %q is plain http: set verifier.allow_plain_http: true to allow it", f.Verifier.URL)
	default:
		p.add("verifier.url %q: scheme must be https", f.Verifier.URL)
	}
	if cfg.VerifierURL != nil && cfg.VerifierURL.Scheme == "https" && !isAbs(cfg.CAFile) {
		p.add("verifier.ca_file %q: an absolute path is required for https", cfg.CAFile)
	}
	if len(cfg.TokenAudience) > 256 {
		p.add("verifier.token_audience longer than 256 bytes")
	}
	if !api.ValidKeyName(cfg.KeyName) {
		p.add("key_name %q: want %s", cfg.KeyName, api.KeyNameRule)
	}
}

// validateDisks checks the os_disk and temp_disk sections.
func validateDisks(p *problems, cfg *Config) {
	switch {
	case cfg.OSDiskUUID == "":
		p.add("os_disk.luks_uuid is required (or confidant.os_disk_uuid= on the kernel command line)")
	case !validUUID(cfg.OSDiskUUID):
		p.add("os_disk.luks_uuid %q is not a UUID", cfg.OSDiskUUID)
	}
	if !isAbs(cfg.RootMount) || cfg.RootMount == "/" {
		p.add("os_disk.mount %q: want an absolute path other than /", cfg.RootMount)
	}
	if cfg.TempDevice != "" && (!strings.HasPrefix(cfg.TempDevice, "/dev/") || !isAbs(cfg.TempDevice)) {
		p.add("temp_disk.device %q: want a path under /dev/", cfg.TempDevice)
	}
	if !isAbs(cfg.TempMount) || cfg.TempMount == "/" {
		p.add("temp_disk.mount %q: want an absolute path other than /", cfg.TempMount)
	}
	if cfg.TempSwapSize != 0 && (cfg.TempSwapSize < agentconfig.MinSwapSize || cfg.TempSwapSize > agentconfig.MaxSwapSize) {
		p.add("temp_disk.swap_size %d: want 0 (no swap) or %d to %d bytes", cfg.TempSwapSize, agentconfig.MinSwapSize, agentconfig.MaxSwapSize)
	}
	for _, c := range []struct {
		key  string
		argv []string
	}{{"temp_disk.mkfs", cfg.TempMkfs}, {"temp_disk.mkswap", cfg.TempMkswap}} {
		if len(c.argv) > 0 && !isAbs(c.argv[0]) {
			p.add("%s: the command %q must be an absolute path", c.key, c.argv[0])
		}
		for _, a := range c.argv {
			if a == "" || strings.ContainsRune(a, 0) {
				p.add("%s: empty argument or NUL byte", c.key)
				break
			}
		}
	}
}

// validateDevices checks the evidence interface, its port and the network
// interface's name.
func validateDevices(p *problems, f *agentconfig.File, cfg *Config) {
	if !cfg.TEE.Valid() {
		p.add("tee %q: want auto, configfs-tsm, sev-guest, tdx-guest or sim", f.TEE)
	}
	if !validPortName(cfg.SimPort, 64) {
		p.add("sim_port %q: want 1-64 of [A-Za-z0-9_.:-]", cfg.SimPort)
	}
	if cfg.Interface != "" && (!validPortName(cfg.Interface, 15) || cfg.Interface == "lo") {
		p.add("network.interface %q: not a usable interface name", cfg.Interface)
	}
}

// validateNetwork checks the static address and gateway, and sets them.
func validateNetwork(p *problems, f *agentconfig.File, cfg *Config) {
	if f.Network.Address != "" {
		a, err := netip.ParsePrefix(f.Network.Address)
		switch {
		case err != nil:
			p.add("network.address %q: want ADDRESS/PREFIXLEN: %v", f.Network.Address, err)
		case a.Addr().Zone() != "" || a.Addr().IsUnspecified() || a.Addr().IsMulticast() || a.Addr().IsLoopback():
			p.add("network.address %q: not a unicast host address", f.Network.Address)
		default:
			cfg.Address = a
		}
	}
	if f.Network.Gateway != "" {
		g, err := netip.ParseAddr(f.Network.Gateway)
		switch {
		case err != nil:
			p.add("network.gateway %q: %v", f.Network.Gateway, err)
		case f.Network.Address == "":
			p.add("network.gateway needs network.address")
		case cfg.Address.IsValid() && g.Is4() != cfg.Address.Addr().Is4():
			p.add("network.gateway %s and network.address %s are of different families", g, cfg.Address)
		default:
			cfg.Gateway = g
		}
	}
}

// validateRun checks the timeouts, the failure action and the module lists.
func validateRun(p *problems, f *agentconfig.File, cfg *Config) {
	if cfg.RetryBudget <= 0 || cfg.RetryBudget > time.Hour {
		p.add("retry_budget %v: want more than 0 and at most 1h", cfg.RetryBudget)
	}
	if cfg.DeviceTimeout <= 0 || cfg.DeviceTimeout > 10*time.Minute {
		p.add("device_timeout %v: want more than 0 and at most 10m", cfg.DeviceTimeout)
	}
	if !cfg.OnFailure.Valid() {
		p.add("on_failure %q: want poweroff or reboot", f.OnFailure)
	}
	if cfg.ModulesFile != "" && !isAbs(cfg.ModulesFile) {
		p.add("modules_file %q: want an absolute path", cfg.ModulesFile)
	}
	for _, m := range cfg.Modules {
		if !isAbs(m) {
			p.add("modules: %q: want an absolute path", m)
		}
	}
}

// isAbs reports whether p is an absolute, clean path.
func isAbs(p string) bool {
	return strings.HasPrefix(p, "/") && path.Clean(p) == p && !strings.ContainsRune(p, 0)
}
