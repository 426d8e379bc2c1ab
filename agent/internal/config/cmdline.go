package config

import (
	"fmt"
	"log/slog"
	"slices"
	"strings"

	"github.com/confidant-cvm/confidant/shared/agentconfig"
)

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
func applyCmdline(f *agentconfig.File, cmdline string, log *slog.Logger) ([]string, []error) {
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
