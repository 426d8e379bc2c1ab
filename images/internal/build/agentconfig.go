package build

import (
	"bytes"
	"fmt"
	"net/netip"
	"net/url"
	"regexp"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/confidant-cvm/confidant/shared/agentconfig"
	"github.com/confidant-cvm/confidant/shared/api"
)

// The agent's TEE interfaces (shared/agentconfig), as the strings of the
// --tee flag and of AgentConfig.TEE.
const (
	TEEAuto        = string(agentconfig.TEEAuto)
	TEEConfigfsTSM = string(agentconfig.TEEConfigfsTSM)
	TEESEVGuest    = string(agentconfig.TEESEVGuest)
	TEETDXGuest    = string(agentconfig.TEETDXGuest)
	TEESim         = string(agentconfig.TEESim)
)

// AgentConfig is what build writes into the agent's configuration file
// (/etc/confidant/agent.yaml in the initramfs). Zero values are the agent's
// defaults; the OS disk's LUKS UUID is added by Build.
type AgentConfig struct {
	// VerifierURL is the verifier's base URL as the guest reaches it, e.g.
	// https://10.0.2.100:8443 behind confidant-hostd. Required.
	VerifierURL string
	// AllowPlainHTTP permits an http:// VerifierURL (development only).
	AllowPlainHTTP bool
	// TokenAudience is the token audience to ask for; "": the verifier's
	// default.
	TokenAudience string
	// KeyName names the key the verifier releases for the OS disk. Required.
	KeyName string
	// TEE is the evidence interface: auto, configfs-tsm, sev-guest,
	// tdx-guest or sim; "": auto.
	TEE string
	// TempDisk is the temp disk's device node (e.g. /dev/vdb); "": none.
	TempDisk string
	// SwapSize is the size in bytes of the swap file the agent makes on the
	// temp disk; 0: no swap. Needs TempDisk.
	SwapSize int64
	// Address is the guest's static address ADDRESS/PREFIXLEN; "": only lo.
	Address string
	// Gateway is the default gateway; "": none.
	Gateway string
	// OnFailure is poweroff or reboot; "": poweroff.
	OnFailure string
}

// The agent's own rules (agent/internal/config), checked here so that a
// build fails at once rather than a guest at boot.
var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// check reports every problem of c; haveCA says whether the initramfs gets
// CA certificates for the verifier's TLS.
func (c AgentConfig) check(haveCA bool) []error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrSpec}, args...)...))
	}
	switch u, err := url.Parse(c.VerifierURL); {
	case c.VerifierURL == "":
		bad("the verifier URL is required")
	case err != nil:
		bad("verifier URL: %v", err)
	case u.Host == "" || u.Opaque != "" || u.User != nil || u.RawQuery != "" || u.Fragment != "":
		bad("verifier URL %q: want scheme://host[:port][/path]", c.VerifierURL)
	case u.Scheme == "https":
		if !haveCA {
			bad("verifier URL %q is https: the initramfs needs the verifier's CA certificates (the guest has no other trust store)", c.VerifierURL)
		}
	case u.Scheme == "http":
		if !c.AllowPlainHTTP {
			bad("verifier URL %q is plain http: allow it explicitly (development only)", c.VerifierURL)
		}
	default:
		bad("verifier URL %q: scheme must be https", c.VerifierURL)
	}
	if len(c.TokenAudience) > 256 {
		bad("token audience longer than 256 bytes")
	}
	if !api.ValidKeyName(c.KeyName) {
		bad("key name %q: want %s", c.KeyName, api.KeyNameRule)
	}
	if c.TEE != "" && !agentconfig.TEE(c.TEE).Valid() {
		bad("tee %q: want auto, configfs-tsm, sev-guest, tdx-guest or sim", c.TEE)
	}
	if c.TempDisk != "" && (!strings.HasPrefix(c.TempDisk, "/dev/") || strings.ContainsAny(c.TempDisk, " \t\n\x00") || strings.Contains(c.TempDisk, "/../")) {
		bad("temp disk %q: want a device path under /dev/", c.TempDisk)
	}
	if c.SwapSize != 0 && (c.TempDisk == "" || c.SwapSize < agentconfig.MinSwapSize || c.SwapSize > agentconfig.MaxSwapSize) {
		bad("swap size %d: needs a temp disk, and %d to %d bytes", c.SwapSize, agentconfig.MinSwapSize, agentconfig.MaxSwapSize)
	}
	if c.Address != "" {
		if p, err := netip.ParsePrefix(c.Address); err != nil || !p.Addr().Is4() && !p.Addr().Is6() || p.Addr().IsUnspecified() || p.Addr().IsLoopback() || p.Addr().IsMulticast() {
			bad("guest address %q: want a unicast ADDRESS/PREFIXLEN", c.Address)
		}
	}
	if c.Gateway != "" {
		if c.Address == "" {
			bad("a gateway needs a guest address")
		} else if _, err := netip.ParseAddr(c.Gateway); err != nil {
			bad("gateway %q: %v", c.Gateway, err)
		}
	}
	if c.OnFailure != "" && !agentconfig.OnFailure(c.OnFailure).Valid() {
		bad("on failure %q: want poweroff or reboot", c.OnFailure)
	}
	return errs
}

// YAML renders the agent configuration for the OS disk with LUKS UUID
// luksUUID, in the schema the agent reads (shared/agentconfig): only the
// keys build sets, the rest left to the agent's defaults. The output
// depends only on c and luksUUID.
func (c AgentConfig) YAML(luksUUID string) ([]byte, error) {
	f := agentconfig.File{
		Verifier: agentconfig.Verifier{
			URL:            c.VerifierURL,
			AllowPlainHTTP: c.AllowPlainHTTP,
			TokenAudience:  c.TokenAudience,
		},
		KeyName:   c.KeyName,
		OSDisk:    agentconfig.OSDisk{LUKSUUID: luksUUID},
		TEE:       c.TEE,
		Network:   agentconfig.Network{Address: c.Address, Gateway: c.Gateway},
		OnFailure: c.OnFailure,
	}
	if c.TempDisk != "" {
		f.TempDisk = agentconfig.TempDisk{Device: c.TempDisk, SwapSize: agentconfig.Size(c.SwapSize)}
	}
	if f.TEE == "" {
		f.TEE = TEEAuto
	}
	var b bytes.Buffer
	b.WriteString("# Written by confidant-image build. Measured: part of the initramfs.\n")
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(&f); err != nil {
		return nil, fmt.Errorf("rendering agent configuration: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("rendering agent configuration: %w", err)
	}
	return b.Bytes(), nil
}
