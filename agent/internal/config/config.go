// Package config reads the agent's configuration: the YAML file baked into
// the initramfs, narrowed by a few keys of the kernel command line.
//
// The file is the trusted source: it is part of the measured initramfs. The
// kernel command line is measured too, but it is chosen per guest by the
// host's tooling, so it may only set what differs between guests of one
// image — the OS disk's LUKS UUID, the temp disk device and the static
// network address ([CmdlineKeys]). It can never set the verifier URL, the CA,
// plain HTTP, the debug shell or anything else; such keys are ignored with a
// logged warning.
//
// Example (every key; the values shown for optional keys are the defaults):
//
//	verifier:
//	  url: https://10.0.2.2:8443        # required; http:// only with allow_plain_http
//	  ca_file: /etc/confidant/verifier-ca.pem
//	  allow_plain_http: false
//	  token_audience: ""                # empty: the verifier's default audience
//	key_name: os-disk                   # required: the released key's name
//	os_disk:
//	  luks_uuid: 3f1c...                # required (here or confidant.os_disk_uuid=)
//	  mount: /sysroot
//	temp_disk:
//	  device: /dev/vdb                  # empty: no temp disk (or confidant.temp_disk=)
//	  mount: /mnt/resource              # inside the OS root
//	  allow_reset: false                # true: reformat a temp disk the released key does not open
//	  swap_size: 0                      # swap file on the temp disk: bytes or 512MiB, 2G...; 0: none
//	  mkfs: []                          # argv making its filesystem, device appended; []: the agent's ext4 formatter
//	  mkswap: []                        # argv making the swap file, path appended; []: busybox mkswap
//	tee: auto                           # auto | configfs-tsm | sev-guest | tdx-guest | sim
//	sim_port: confidant.sp              # virtio-serial port name of the simulated TEE
//	network:
//	  interface: ""                     # empty: the first non-loopback interface
//	  address: 10.0.2.15/24             # empty: only lo (or confidant.ip=)
//	  gateway: 10.0.2.2                 # empty: no default route (or confidant.gw=)
//	retry_budget: 60s                   # total time for reaching the verifier
//	device_timeout: 10s                 # how long to wait for disks, ports, NICs
//	on_failure: poweroff                # poweroff | reboot
//	debug_shell: false                  # true: run /bin/sh on the console before halting
//	modules_file: /etc/confidant/modules
//	modules: []                         # further module files, loaded after modules_file's
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"net/url"
	"path"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/confidant-cvm/confidant/shared/api"
	"github.com/confidant-cvm/confidant/shared/bytesize"
)

// ErrInvalid is matched by every configuration problem Parse reports.
var ErrInvalid = errors.New("invalid agent configuration")

// Defaults. The paths match the layout the image tool writes
// (shared/initramfs).
const (
	DefaultPath          = "/etc/confidant/agent.yaml"
	DefaultCAFile        = "/etc/confidant/verifier-ca.pem"
	DefaultModulesFile   = "/etc/confidant/modules"
	DefaultRootMount     = "/sysroot"
	DefaultTempMount     = "/mnt/resource"
	DefaultSimPort       = "confidant.sp"
	DefaultRetryBudget   = 60 * time.Second
	DefaultDeviceTimeout = 10 * time.Second
)

// Bounds of temp_disk.swap_size.
const (
	MinSwapSize = 1 << 20
	MaxSwapSize = 1 << 40
)

// The run directory: what the agent leaves for the booted OS in RunDir, on
// the initramfs's /run tmpfs that switch_root moves into the OS. Nothing
// there is a key; the token is readable by root only.
const (
	RunDir = "/run/confidant"
	// RunTokenFile holds the boot's attestation token (0600).
	RunTokenFile = "token.jwt"
	// RunConfigFile is a copy of the agent's configuration file.
	RunConfigFile = "agent.yaml"
	// RunCAFile is a copy of the verifier's CA certificates (https only).
	RunCAFile = "verifier-ca.pem"
	// RunAgentFile is a copy of the agent binary, for the post-boot token
	// command and service.
	RunAgentFile = "confidant-agent"
	// RunSocketFile is the post-boot token service's unix socket.
	RunSocketFile = "agent.sock"
)

// maxFile bounds the configuration file.
const maxFile = 64 << 10

// TEE selects how the agent obtains hardware evidence.
type TEE string

// The TEE interfaces.
const (
	// TEEAuto uses the first hardware interface present: configfs-tsm, then
	// /dev/sev-guest, then /dev/tdx_guest. It never picks the simulation.
	TEEAuto TEE = "auto"
	// TEEConfigfsTSM uses /sys/kernel/config/tsm/report.
	TEEConfigfsTSM TEE = "configfs-tsm"
	// TEESEVGuest uses /dev/sev-guest.
	TEESEVGuest TEE = "sev-guest"
	// TEETDXGuest uses /dev/tdx_guest.
	TEETDXGuest TEE = "tdx-guest"
	// TEESim uses the simulated secure processor on a virtio-serial port.
	TEESim TEE = "sim"
)

// OnFailure is what the agent does after a failure.
type OnFailure string

// The failure actions.
const (
	PowerOff OnFailure = "poweroff"
	Reboot   OnFailure = "reboot"
)

// Config is a validated agent configuration.
type Config struct {
	// VerifierURL is the verifier's base URL (https, or http when
	// AllowPlainHTTP).
	VerifierURL *url.URL
	// CAFile holds the PEM CA certificates for the verifier's TLS.
	CAFile string
	// AllowPlainHTTP permits an http:// verifier URL.
	AllowPlainHTTP bool
	// TokenAudience is the audience to request for the token; empty: the
	// verifier's default.
	TokenAudience string
	// KeyName names the key the verifier releases for the OS disk.
	KeyName string
	// OSDiskUUID is the OS disk's LUKS UUID, lower case.
	OSDiskUUID string
	// RootMount is where the OS root is mounted before switching to it.
	RootMount string
	// TempDevice is the temp disk's device node; empty: no temp disk.
	TempDevice string
	// TempMount is where the temp disk is mounted, inside the OS root.
	TempMount string
	// TempAllowReset reformats a temp disk whose LUKS2 header the released
	// key does not open (another guest's, or corrupt), destroying its data.
	// Only the file can set it.
	TempAllowReset bool
	// TempSwapSize is the size in bytes of a swap file on the temp disk; 0:
	// no swap.
	TempSwapSize int64
	// TempMkfs is the command making the temp disk's filesystem (the device
	// node appended); nil: the disks package's built-in ext4 formatter.
	TempMkfs []string
	// TempMkswap is the command making the swap file (its path appended);
	// nil: the disks package's default (busybox mkswap).
	TempMkswap []string
	// TEE selects the hardware evidence interface.
	TEE TEE
	// SimPort names the virtio-serial port of the simulated TEE.
	SimPort string
	// Interface is the network interface to configure; empty: the first
	// non-loopback one.
	Interface string
	// Address is the static address with prefix length; invalid (zero):
	// no address, only lo comes up.
	Address netip.Prefix
	// Gateway is the default gateway; invalid (zero): no default route.
	Gateway netip.Addr
	// RetryBudget is the total time allowed for reaching the verifier.
	RetryBudget time.Duration
	// DeviceTimeout bounds each wait for disks, ports and interfaces.
	DeviceTimeout time.Duration
	// OnFailure is the action after a failure.
	OnFailure OnFailure
	// DebugShell runs /bin/sh on the console after a failure, before the
	// OnFailure action.
	DebugShell bool
	// ModulesFile lists kernel modules to load, one path per line; empty:
	// none.
	ModulesFile string
	// Modules are further module files, loaded after ModulesFile's.
	Modules []string
	// FromCmdline lists the command line keys that set a value.
	FromCmdline []string
}

// file is the YAML shape, with defaults filled in before decoding.
type file struct {
	Verifier struct {
		URL            string `yaml:"url"`
		CAFile         string `yaml:"ca_file"`
		AllowPlainHTTP bool   `yaml:"allow_plain_http"`
		TokenAudience  string `yaml:"token_audience"`
	} `yaml:"verifier"`
	KeyName string `yaml:"key_name"`
	OSDisk  struct {
		LUKSUUID string `yaml:"luks_uuid"`
		Mount    string `yaml:"mount"`
	} `yaml:"os_disk"`
	TempDisk struct {
		Device     string   `yaml:"device"`
		Mount      string   `yaml:"mount"`
		AllowReset bool     `yaml:"allow_reset"`
		SwapSize   size     `yaml:"swap_size"`
		Mkfs       []string `yaml:"mkfs"`
		Mkswap     []string `yaml:"mkswap"`
	} `yaml:"temp_disk"`
	TEE     string `yaml:"tee"`
	SimPort string `yaml:"sim_port"`
	Network struct {
		Interface string `yaml:"interface"`
		Address   string `yaml:"address"`
		Gateway   string `yaml:"gateway"`
	} `yaml:"network"`
	RetryBudget   time.Duration `yaml:"retry_budget"`
	DeviceTimeout time.Duration `yaml:"device_timeout"`
	OnFailure     string        `yaml:"on_failure"`
	DebugShell    bool          `yaml:"debug_shell"`
	ModulesFile   string        `yaml:"modules_file"`
	Modules       []string      `yaml:"modules"`
}

func defaults() *file {
	f := &file{}
	f.Verifier.CAFile = DefaultCAFile
	f.OSDisk.Mount = DefaultRootMount
	f.TempDisk.Mount = DefaultTempMount
	f.TEE = string(TEEAuto)
	f.SimPort = DefaultSimPort
	f.RetryBudget = DefaultRetryBudget
	f.DeviceTimeout = DefaultDeviceTimeout
	f.OnFailure = string(PowerOff)
	f.ModulesFile = DefaultModulesFile
	return f
}

// Parse decodes the YAML configuration strictly (unknown keys, wrong types
// and duplicate keys are errors), applies the allowed keys of the kernel
// command line, and validates the result. Every problem is reported at once;
// each matches ErrInvalid. Ignored command line keys are logged as warnings.
func Parse(data []byte, cmdline string, log *slog.Logger) (*Config, error) {
	var errs []error
	problem := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...))
	}
	if len(data) > maxFile {
		problem("file larger than %d bytes", maxFile)
		return nil, errors.Join(errs...)
	}
	f := defaults()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	err := dec.Decode(f)
	var typeErr *yaml.TypeError
	switch {
	case err == nil:
		var extra any
		if dec.Decode(&extra) != io.EOF {
			problem("more than one YAML document")
		}
	case errors.Is(err, io.EOF):
		problem("empty file")
	case errors.As(err, &typeErr):
		// Decoding went on past these; report them all with the rest.
		for _, e := range typeErr.Errors {
			problem("%s", e)
		}
	default:
		problem("%v", err)
		return nil, errors.Join(errs...)
	}

	set, cmdErrs := applyCmdline(f, cmdline, log)
	errs = append(errs, cmdErrs...)
	cfg, valErrs := validate(f)
	errs = append(errs, valErrs...)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	cfg.FromCmdline = set
	return cfg, nil
}

// The name checks are written out rather than as regular expressions (the
// key name's is api.ValidKeyName): compiling those at start-up cost the agent, as PID 1 in an emulated guest,
// tens of milliseconds before its first line.

// validUUID: canonical 8-4-4-4-12 hexadecimal.
func validUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch i {
		case 8, 13, 18, 23:
			if s[i] != '-' {
				return false
			}
		default:
			if !isHex(s[i]) {
				return false
			}
		}
	}
	return true
}

// validPortName: 1 to max of [A-Za-z0-9_.:-] (interface and virtio-serial
// port names).
func validPortName(s string, max int) bool {
	return len(s) >= 1 && len(s) <= max && allOf(s, func(c byte) bool {
		return isAlnum(c) || c == '_' || c == '.' || c == ':' || c == '-'
	})
}

func allOf(s string, ok func(byte) bool) bool {
	for i := 0; i < len(s); i++ {
		if !ok(s[i]) {
			return false
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

func isHex(c byte) bool { return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F' }

// validate turns the decoded file into a Config.
func validate(f *file) (*Config, []error) {
	var errs []error
	problem := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...))
	}
	cfg := &Config{
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

	switch u, err := url.Parse(f.Verifier.URL); {
	case f.Verifier.URL == "":
		problem("verifier.url is required")
	case err != nil:
		problem("verifier.url: %v", err)
	case u.Host == "" || u.Opaque != "" || u.User != nil || u.RawQuery != "" || u.Fragment != "":
		problem("verifier.url %q: want scheme://host[:port][/path]", f.Verifier.URL)
	case u.Scheme == "https":
		cfg.VerifierURL = u
	case u.Scheme == "http" && f.Verifier.AllowPlainHTTP:
		cfg.VerifierURL = u
	case u.Scheme == "http":
		problem("verifier.url %q is plain http: set verifier.allow_plain_http: true to allow it", f.Verifier.URL)
	default:
		problem("verifier.url %q: scheme must be https", f.Verifier.URL)
	}
	if cfg.VerifierURL != nil && cfg.VerifierURL.Scheme == "https" && !isAbs(cfg.CAFile) {
		problem("verifier.ca_file %q: an absolute path is required for https", cfg.CAFile)
	}
	if len(cfg.TokenAudience) > 256 {
		problem("verifier.token_audience longer than 256 bytes")
	}
	if !api.ValidKeyName(cfg.KeyName) {
		problem("key_name %q: want %s", cfg.KeyName, api.KeyNameRule)
	}
	switch {
	case cfg.OSDiskUUID == "":
		problem("os_disk.luks_uuid is required (or confidant.os_disk_uuid= on the kernel command line)")
	case !validUUID(cfg.OSDiskUUID):
		problem("os_disk.luks_uuid %q is not a UUID", cfg.OSDiskUUID)
	}
	if !isAbs(cfg.RootMount) || cfg.RootMount == "/" {
		problem("os_disk.mount %q: want an absolute path other than /", cfg.RootMount)
	}
	if cfg.TempDevice != "" && (!strings.HasPrefix(cfg.TempDevice, "/dev/") || !isAbs(cfg.TempDevice)) {
		problem("temp_disk.device %q: want a path under /dev/", cfg.TempDevice)
	}
	if !isAbs(cfg.TempMount) || cfg.TempMount == "/" {
		problem("temp_disk.mount %q: want an absolute path other than /", cfg.TempMount)
	}
	if cfg.TempSwapSize != 0 && (cfg.TempSwapSize < MinSwapSize || cfg.TempSwapSize > MaxSwapSize) {
		problem("temp_disk.swap_size %d: want 0 (no swap) or %d to %d bytes", cfg.TempSwapSize, MinSwapSize, MaxSwapSize)
	}
	for _, c := range []struct {
		key  string
		argv []string
	}{{"temp_disk.mkfs", cfg.TempMkfs}, {"temp_disk.mkswap", cfg.TempMkswap}} {
		if len(c.argv) > 0 && !isAbs(c.argv[0]) {
			problem("%s: the command %q must be an absolute path", c.key, c.argv[0])
		}
		for _, a := range c.argv {
			if a == "" || strings.ContainsRune(a, 0) {
				problem("%s: empty argument or NUL byte", c.key)
				break
			}
		}
	}
	switch cfg.TEE {
	case TEEAuto, TEEConfigfsTSM, TEESEVGuest, TEETDXGuest, TEESim:
	default:
		problem("tee %q: want auto, configfs-tsm, sev-guest, tdx-guest or sim", f.TEE)
	}
	if !validPortName(cfg.SimPort, 64) {
		problem("sim_port %q: want 1-64 of [A-Za-z0-9_.:-]", cfg.SimPort)
	}
	if cfg.Interface != "" && (!validPortName(cfg.Interface, 15) || cfg.Interface == "lo") {
		problem("network.interface %q: not a usable interface name", cfg.Interface)
	}
	if f.Network.Address != "" {
		p, err := netip.ParsePrefix(f.Network.Address)
		switch {
		case err != nil:
			problem("network.address %q: want ADDRESS/PREFIXLEN: %v", f.Network.Address, err)
		case p.Addr().Zone() != "" || p.Addr().IsUnspecified() || p.Addr().IsMulticast() || p.Addr().IsLoopback():
			problem("network.address %q: not a unicast host address", f.Network.Address)
		default:
			cfg.Address = p
		}
	}
	if f.Network.Gateway != "" {
		g, err := netip.ParseAddr(f.Network.Gateway)
		switch {
		case err != nil:
			problem("network.gateway %q: %v", f.Network.Gateway, err)
		case f.Network.Address == "":
			problem("network.gateway needs network.address")
		case cfg.Address.IsValid() && g.Is4() != cfg.Address.Addr().Is4():
			problem("network.gateway %s and network.address %s are of different families", g, cfg.Address)
		default:
			cfg.Gateway = g
		}
	}
	if cfg.RetryBudget <= 0 || cfg.RetryBudget > time.Hour {
		problem("retry_budget %v: want more than 0 and at most 1h", cfg.RetryBudget)
	}
	if cfg.DeviceTimeout <= 0 || cfg.DeviceTimeout > 10*time.Minute {
		problem("device_timeout %v: want more than 0 and at most 10m", cfg.DeviceTimeout)
	}
	switch cfg.OnFailure {
	case PowerOff, Reboot:
	default:
		problem("on_failure %q: want poweroff or reboot", f.OnFailure)
	}
	if cfg.ModulesFile != "" && !isAbs(cfg.ModulesFile) {
		problem("modules_file %q: want an absolute path", cfg.ModulesFile)
	}
	for _, m := range cfg.Modules {
		if !isAbs(m) {
			problem("modules: %q: want an absolute path", m)
		}
	}
	return cfg, errs
}

// isAbs reports whether p is an absolute, clean path.
func isAbs(p string) bool {
	return strings.HasPrefix(p, "/") && path.Clean(p) == p && !strings.ContainsRune(p, 0)
}

// cmdlineKeys are the kernel command line keys the agent reads; every other
// "confidant." key is ignored with a warning.
var cmdlineKeys = []string{CmdlineOSDiskUUID, CmdlineTempDisk, CmdlineIP, CmdlineGateway}

// The kernel command line keys the agent honours.
const (
	// CmdlineOSDiskUUID sets os_disk.luks_uuid.
	CmdlineOSDiskUUID = "confidant.os_disk_uuid"
	// CmdlineTempDisk sets temp_disk.device.
	CmdlineTempDisk = "confidant.temp_disk"
	// CmdlineIP sets network.address (ADDRESS/PREFIXLEN).
	CmdlineIP = "confidant.ip"
	// CmdlineGateway sets network.gateway.
	CmdlineGateway = "confidant.gw"
)

// CmdlineKeys returns the kernel command line keys the agent honours.
func CmdlineKeys() []string { return slices.Clone(cmdlineKeys) }

// applyCmdline sets the allowed keys of cmdline on f and returns the keys
// that set something. Values are checked by validate like the file's.
func applyCmdline(f *file, cmdline string, log *slog.Logger) ([]string, []error) {
	var set []string
	var errs []error
	for _, p := range ParseCmdline(cmdline) {
		if !strings.HasPrefix(p.Key, "confidant.") {
			continue
		}
		var target *string
		switch p.Key {
		case CmdlineOSDiskUUID:
			target = &f.OSDisk.LUKSUUID
		case CmdlineTempDisk:
			target = &f.TempDisk.Device
		case CmdlineIP:
			target = &f.Network.Address
		case CmdlineGateway:
			target = &f.Network.Gateway
		default:
			// The value is not logged: it is ignored, and the warning stays
			// one short line whatever was put there.
			log.Warn("ignoring kernel command line key: it may not change the agent configuration",
				"key", p.Key, "allowed", strings.Join(cmdlineKeys, ","))
			continue
		}
		if !p.HasValue || p.Value == "" {
			errs = append(errs, fmt.Errorf("%w: kernel command line key %s has no value", ErrInvalid, p.Key))
			continue
		}
		if *target != "" && *target != p.Value {
			log.Info("kernel command line overrides the configuration file", "key", p.Key)
		}
		*target = p.Value
		if !slices.Contains(set, p.Key) {
			set = append(set, p.Key)
		}
	}
	return set, errs
}

// Param is one kernel command line parameter.
type Param struct {
	Key   string
	Value string
	// HasValue is false for a bare flag ("quiet").
	HasValue bool
}

// ParseCmdline splits a kernel command line into parameters the way the
// kernel does: whitespace separates them, double quotes group whitespace
// into a value and are removed.
func ParseCmdline(cmdline string) []Param {
	var params []Param
	var cur strings.Builder
	inQuote, have := false, false
	flush := func() {
		if !have {
			return
		}
		tok := cur.String()
		cur.Reset()
		have = false
		k, v, ok := strings.Cut(tok, "=")
		if k == "" {
			return
		}
		params = append(params, Param{Key: k, Value: v, HasValue: ok})
	}
	for _, r := range cmdline {
		switch {
		case r == '"':
			inQuote = !inQuote
			have = true
		case !inQuote && (r == ' ' || r == '\t' || r == '\n' || r == '\r' || r == '\v' || r == '\f' || r == 0):
			flush()
		default:
			cur.WriteRune(r)
			have = true
		}
	}
	flush()
	return params
}

// size is a byte count in YAML: an integer, or a number with a unit (K, M,
// G, T, with or without "iB"; powers of 1024).
type size int64

// UnmarshalYAML decodes a size.
func (s *size) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: want a size such as 512MiB", n.Line)
	}
	v, err := ParseSize(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*s = size(v)
	return nil
}

// ParseSize parses a byte count: digits, optionally followed by K, M, G or
// T (powers of 1024), optionally followed by "iB" ("512M", "512MiB", "2G"),
// in shared/bytesize's loose syntax. It refuses negative numbers, fractions
// and values above 1 EiB.
func ParseSize(v string) (int64, error) {
	return bytesize.Parse(v, bytesize.Options{Max: maxSize, Loose: true})
}

// maxSize caps ParseSize: 1 EiB.
const maxSize = 1 << 60
