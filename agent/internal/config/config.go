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
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/confidant-cvm/confidant/shared/agentconfig"
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

// TEE selects how the agent obtains hardware evidence (shared/agentconfig
// documents the values).
type TEE = agentconfig.TEE

// The TEE interfaces.
const (
	TEEAuto        = agentconfig.TEEAuto
	TEEConfigfsTSM = agentconfig.TEEConfigfsTSM
	TEESEVGuest    = agentconfig.TEESEVGuest
	TEETDXGuest    = agentconfig.TEETDXGuest
	TEESim         = agentconfig.TEESim
)

// OnFailure is what the agent does after a failure.
type OnFailure = agentconfig.OnFailure

// The failure actions.
const (
	PowerOff = agentconfig.PowerOff
	Reboot   = agentconfig.Reboot
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

// defaults is the file's shape (shared/agentconfig) with the defaults
// filled in before decoding.
func defaults() *agentconfig.File {
	f := &agentconfig.File{}
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
