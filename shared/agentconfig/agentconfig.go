// Package agentconfig is the schema of the agent's configuration file, the
// contract between the image tool that writes it (confidant-image build puts
// it in the initramfs as /etc/confidant/agent.yaml) and the agent that reads
// it (agent/internal/config, which fills in its defaults, applies the kernel
// command line and validates the result).
//
// File is the YAML shape. A writer sets only what it means to set: every
// optional key is omitted when zero, so the agent's defaults apply; the
// required keys (verifier.url, key_name, os_disk.luks_uuid, tee) are always
// written.
package agentconfig

import (
	"fmt"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/confidant-cvm/confidant/shared/bytesize"
)

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

// Valid reports whether t is one of the TEE interfaces.
func (t TEE) Valid() bool {
	switch t {
	case TEEAuto, TEEConfigfsTSM, TEESEVGuest, TEETDXGuest, TEESim:
		return true
	}
	return false
}

// OnFailure is what the agent does after a failure.
type OnFailure string

// The failure actions.
const (
	PowerOff OnFailure = "poweroff"
	Reboot   OnFailure = "reboot"
)

// Valid reports whether a is one of the failure actions.
func (a OnFailure) Valid() bool { return a == PowerOff || a == Reboot }

// Bounds of temp_disk.swap_size.
const (
	MinSwapSize = 1 << 20
	MaxSwapSize = 1 << 40
)

// File is the YAML shape of the configuration. The agent's package
// documents every key and its default.
type File struct {
	Verifier Verifier `yaml:"verifier"`
	// KeyName names the key the verifier releases for the OS disk
	// (api.ValidKeyName).
	KeyName  string   `yaml:"key_name"`
	OSDisk   OSDisk   `yaml:"os_disk"`
	TempDisk TempDisk `yaml:"temp_disk,omitempty"`
	// TEE is one of the TEE values; it is a string here so that a value of
	// the wrong YAML kind is reported as for any other string.
	TEE           string        `yaml:"tee"`
	SimPort       string        `yaml:"sim_port,omitempty"`
	Network       Network       `yaml:"network,omitempty"`
	RetryBudget   time.Duration `yaml:"retry_budget,omitempty"`
	DeviceTimeout time.Duration `yaml:"device_timeout,omitempty"`
	// OnFailure is one of the OnFailure values.
	OnFailure   string   `yaml:"on_failure,omitempty"`
	DebugShell  bool     `yaml:"debug_shell,omitempty"`
	ModulesFile string   `yaml:"modules_file,omitempty"`
	Modules     []string `yaml:"modules,omitempty"`
}

// Verifier is the verifier section.
type Verifier struct {
	URL            string `yaml:"url"`
	CAFile         string `yaml:"ca_file,omitempty"`
	AllowPlainHTTP bool   `yaml:"allow_plain_http,omitempty"`
	TokenAudience  string `yaml:"token_audience,omitempty"`
}

// OSDisk is the os_disk section.
type OSDisk struct {
	LUKSUUID string `yaml:"luks_uuid"`
	Mount    string `yaml:"mount,omitempty"`
}

// TempDisk is the temp_disk section.
type TempDisk struct {
	Device     string   `yaml:"device,omitempty"`
	Mount      string   `yaml:"mount,omitempty"`
	AllowReset bool     `yaml:"allow_reset,omitempty"`
	SwapSize   Size     `yaml:"swap_size,omitempty"`
	Mkfs       []string `yaml:"mkfs,omitempty"`
	Mkswap     []string `yaml:"mkswap,omitempty"`
}

// Network is the network section.
type Network struct {
	Interface string `yaml:"interface,omitempty"`
	Address   string `yaml:"address,omitempty"`
	Gateway   string `yaml:"gateway,omitempty"`
}

// MaxSize caps a Size: 1 EiB.
const MaxSize = 1 << 60

// ParseSize parses a byte count: digits, optionally followed by K, M, G or
// T (powers of 1024), optionally followed by "iB" ("512M", "512MiB", "2G"),
// in shared/bytesize's loose syntax. It refuses negative numbers, fractions
// and values above 1 EiB.
func ParseSize(v string) (int64, error) {
	return bytesize.Parse(v, bytesize.Options{Max: MaxSize, Loose: true})
}

// Size is a byte count in YAML: an integer, or a number with a unit
// (ParseSize). It is written as an integer.
type Size int64

// UnmarshalYAML decodes a size.
func (s *Size) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: want a size such as 512MiB", n.Line)
	}
	v, err := ParseSize(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*s = Size(v)
	return nil
}
