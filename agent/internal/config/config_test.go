package config

import (
	"bytes"
	"errors"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
)

const minimal = `
verifier:
  url: https://10.0.2.2:8443
key_name: os-disk
os_disk:
  luks_uuid: 3F1C2B6A-1111-4222-8333-444455556666
`

const full = `
verifier:
  url: http://10.0.2.2:8080/base
  ca_file: /etc/ca.pem
  allow_plain_http: true
  token_audience: confidant-test
key_name: os-disk
os_disk:
  luks_uuid: 3f1c2b6a-1111-4222-8333-444455556666
  mount: /newroot
temp_disk:
  device: /dev/vdb
  mount: /mnt/tmp
  allow_reset: true
  swap_size: 512MiB
  mkfs: [/sbin/mkfs.ext4, -q]
  mkswap: [/sbin/mkswap]
tee: sim
sim_port: confidant.sp2
network:
  interface: eth1
  address: 10.0.2.15/24
  gateway: 10.0.2.2
retry_budget: 90s
device_timeout: 3s
on_failure: reboot
debug_shell: true
modules_file: ""
modules: [/lib/modules/x/a.ko]
`

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

func TestParseDefaults(t *testing.T) {
	cfg, err := Parse([]byte(minimal), "", discard())
	if err != nil {
		t.Fatal(err)
	}
	want := Config{
		CAFile: DefaultCAFile, KeyName: "os-disk", OSDiskUUID: "3f1c2b6a-1111-4222-8333-444455556666",
		RootMount: DefaultRootMount, TempMount: DefaultTempMount, TEE: TEEAuto, SimPort: DefaultSimPort,
		RetryBudget: DefaultRetryBudget, DeviceTimeout: DefaultDeviceTimeout, OnFailure: PowerOff,
		ModulesFile: DefaultModulesFile,
	}
	got := *cfg
	if got.VerifierURL.String() != "https://10.0.2.2:8443" {
		t.Errorf("url %v", got.VerifierURL)
	}
	got.VerifierURL = nil
	if !equalConfig(got, want) {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
	if cfg.DebugShell || cfg.AllowPlainHTTP || cfg.TempAllowReset || cfg.TempSwapSize != 0 || cfg.TempMkfs != nil || cfg.TempMkswap != nil {
		t.Error("debug shell, plain http, temp disk reset, swap or a command override on by default")
	}
}

func TestParseFull(t *testing.T) {
	cfg, err := Parse([]byte(full), "", discard())
	if err != nil {
		t.Fatal(err)
	}
	if cfg.VerifierURL.String() != "http://10.0.2.2:8080/base" || !cfg.AllowPlainHTTP || cfg.CAFile != "/etc/ca.pem" ||
		cfg.TokenAudience != "confidant-test" || cfg.RootMount != "/newroot" || cfg.TempDevice != "/dev/vdb" ||
		cfg.TempMount != "/mnt/tmp" || cfg.TEE != TEESim || cfg.SimPort != "confidant.sp2" || cfg.Interface != "eth1" ||
		cfg.Address != netip.MustParsePrefix("10.0.2.15/24") || cfg.Gateway != netip.MustParseAddr("10.0.2.2") ||
		cfg.RetryBudget != 90*time.Second || cfg.DeviceTimeout != 3*time.Second || cfg.OnFailure != Reboot ||
		!cfg.DebugShell || cfg.ModulesFile != "" || !slices.Equal(cfg.Modules, []string{"/lib/modules/x/a.ko"}) ||
		!cfg.TempAllowReset || cfg.TempSwapSize != 512<<20 || !slices.Equal(cfg.TempMkfs, []string{"/sbin/mkfs.ext4", "-q"}) ||
		!slices.Equal(cfg.TempMkswap, []string{"/sbin/mkswap"}) {
		t.Errorf("unexpected config %+v", cfg)
	}
}

func equalConfig(a, b Config) bool {
	return a.CAFile == b.CAFile && a.KeyName == b.KeyName && a.OSDiskUUID == b.OSDiskUUID &&
		a.RootMount == b.RootMount && a.TempMount == b.TempMount && a.TempDevice == b.TempDevice &&
		a.TEE == b.TEE && a.SimPort == b.SimPort && a.RetryBudget == b.RetryBudget &&
		a.DeviceTimeout == b.DeviceTimeout && a.OnFailure == b.OnFailure && a.ModulesFile == b.ModulesFile &&
		a.Address == b.Address && a.Gateway == b.Gateway && a.Interface == b.Interface &&
		a.DebugShell == b.DebugShell && a.AllowPlainHTTP == b.AllowPlainHTTP && a.TokenAudience == b.TokenAudience
}

func TestParseErrors(t *testing.T) {
	tests := map[string]struct {
		yaml    string
		cmdline string
		// wantIn are substrings the joined error must hold, one per
		// expected problem.
		wantIn []string
	}{
		"empty":          {yaml: "", wantIn: []string{"empty file"}},
		"not yaml":       {yaml: "verifier: [", wantIn: []string{"yaml"}},
		"two documents":  {yaml: minimal + "\n---\na: 1\n", wantIn: []string{"more than one YAML document"}},
		"unknown key":    {yaml: minimal + "debug: true\n", wantIn: []string{"field debug not found"}},
		"unknown nested": {yaml: minimal + "network:\n  dns: 1.1.1.1\n", wantIn: []string{"field dns not found"}},
		"duplicate key":  {yaml: minimal + "key_name: other\n", wantIn: []string{`"key_name" already defined`}},
		"wrong type":     {yaml: minimal + "debug_shell: maybe\n", wantIn: []string{"line 7", "maybe", "into bool"}},
		"bad duration":   {yaml: minimal + "retry_budget: soon\n", wantIn: []string{"soon"}},
		"plain http not allowed": {
			yaml:   strings.Replace(minimal, "https://", "http://", 1),
			wantIn: []string{"allow_plain_http"},
		},
		"other scheme":   {yaml: strings.Replace(minimal, "https://", "ftp://", 1), wantIn: []string{"scheme must be https"}},
		"url with query": {yaml: strings.Replace(minimal, "8443", "8443/?x=1", 1), wantIn: []string{"want scheme://host"}},
		"url with user":  {yaml: strings.Replace(minimal, "https://", "https://u:p@", 1), wantIn: []string{"want scheme://host"}},
		"no url":         {yaml: strings.Replace(minimal, "url: https://10.0.2.2:8443", "ca_file: /x", 1), wantIn: []string{"verifier.url is required"}},
		"relative ca":    {yaml: strings.Replace(minimal, "verifier:", "verifier:\n  ca_file: ca.pem", 1), wantIn: []string{"verifier.ca_file"}},
		"http no ca ok":  {yaml: strings.Replace(minimal, "verifier:\n  url: https://", "verifier:\n  ca_file: ''\n  allow_plain_http: true\n  url: http://", 1)},
		"no uuid":        {yaml: strings.Replace(minimal, "luks_uuid: 3F1C2B6A-1111-4222-8333-444455556666", "mount: /sysroot", 1), wantIn: []string{"luks_uuid is required"}},
		"bad uuid":       {yaml: minimal, cmdline: "confidant.os_disk_uuid=nope", wantIn: []string{`"nope" is not a UUID`}},
		"root mount /":   {yaml: strings.Replace(minimal, "os_disk:", "os_disk:\n  mount: /", 1), wantIn: []string{`os_disk.mount "/"`}},
		"dup section":    {yaml: minimal + "os_disk:\n  mount: /x\n", wantIn: []string{`"os_disk" already defined`}},
		"bad tee":        {yaml: minimal + "tee: sgx\n", wantIn: []string{`tee "sgx"`}},
		"bad on_failure": {yaml: minimal + "on_failure: halt\n", wantIn: []string{`on_failure "halt"`}},
		"bad address":    {yaml: minimal + "network:\n  address: 10.0.2.15\n", wantIn: []string{"ADDRESS/PREFIXLEN"}},
		"loopback addr":  {yaml: minimal + "network:\n  address: 127.0.0.2/8\n", wantIn: []string{"not a unicast host"}},
		"gw no address":  {yaml: minimal + "network:\n  gateway: 10.0.2.2\n", wantIn: []string{"needs network.address"}},
		"gw family":      {yaml: minimal + "network:\n  address: 10.0.2.15/24\n  gateway: fe80::1\n", wantIn: []string{"different families"}},
		"iface lo":       {yaml: minimal + "network:\n  interface: lo\n", wantIn: []string{"not a usable interface"}},
		"temp outside":   {yaml: minimal + "temp_disk:\n  device: /tmp/disk\n", wantIn: []string{"under /dev/"}},
		"temp dotdot":    {yaml: minimal + "temp_disk:\n  device: /dev/../etc/x\n", wantIn: []string{"under /dev/"}},
		"zero budget":    {yaml: minimal + "retry_budget: 0s\n", wantIn: []string{"retry_budget 0s"}},
		"long timeout":   {yaml: minimal + "device_timeout: 1h\n", wantIn: []string{"device_timeout 1h0m0s"}},
		"relative mod":   {yaml: minimal + "modules: [a.ko]\n", wantIn: []string{`"a.ko"`}},
		"bad key name":   {yaml: strings.Replace(minimal, "os-disk", "../x", 1), wantIn: []string{"key_name"}},
		"swap too small": {yaml: minimal + "temp_disk:\n  swap_size: 4096\n", wantIn: []string{"temp_disk.swap_size 4096"}},
		"swap too large": {yaml: minimal + "temp_disk:\n  swap_size: 2T\n", wantIn: []string{"temp_disk.swap_size 2199023255552"}},
		"swap unit":      {yaml: minimal + "temp_disk:\n  swap_size: 1PB\n", wantIn: []string{`unknown unit "PB"`}},
		"swap negative":  {yaml: minimal + "temp_disk:\n  swap_size: -1G\n", wantIn: []string{`unknown unit "-1G"`}},
		"swap list":      {yaml: minimal + "temp_disk:\n  swap_size: [1]\n", wantIn: []string{"want a size"}},
		"reset not bool": {yaml: minimal + "temp_disk:\n  allow_reset: sometimes\n", wantIn: []string{"sometimes"}},
		"relative mkfs":  {yaml: minimal + "temp_disk:\n  mkfs: [mke2fs]\n", wantIn: []string{`temp_disk.mkfs: the command "mke2fs"`}},
		"empty mkswap":   {yaml: minimal + "temp_disk:\n  mkswap: [/sbin/mkswap, '']\n", wantIn: []string{"temp_disk.mkswap: empty argument"}},
		"cmdline no value": {
			yaml: minimal, cmdline: "confidant.ip", wantIn: []string{"confidant.ip has no value"},
		},
		"cmdline bad ip": {
			yaml: minimal, cmdline: "confidant.ip=10.0.2.300/24", wantIn: []string{"network.address"},
		},
		"all at once": {
			yaml:   "verifier:\n  url: http://x\nkey_name: ''\ntee: sgx\nbogus: 1\non_failure: halt\n",
			wantIn: []string{"allow_plain_http", "key_name", `tee "sgx"`, "field bogus not found", "on_failure", "luks_uuid is required"},
		},
		"too big": {yaml: minimal + "#" + strings.Repeat("x", maxFile), wantIn: []string{"larger than"}},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := Parse([]byte(tt.yaml), tt.cmdline, discard())
			if len(tt.wantIn) == 0 {
				if err != nil {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error = %v, want ErrInvalid", err)
			}
			for _, w := range tt.wantIn {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
		})
	}
}

// TestCmdlineCannotWiden: the kernel command line sets the per-guest keys,
// and every other confidant.* key — verifier URL, CA, plain HTTP, debug
// shell, TEE — is ignored with a warning.
func TestCmdlineCannotWiden(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	cmdline := `console=ttyS0 confidant.verifier.url=http://evil:80 confidant.verifier=http://evil ` +
		`confidant.allow_plain_http=true confidant.ca_file=/tmp/evil.pem confidant.debug_shell=1 ` +
		`confidant.debug confidant.tee=sim confidant.on_failure=reboot confidant.key_name=other ` +
		`"confidant.os_disk_uuid=aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee" confidant.temp_disk=/dev/vdc ` +
		`confidant.ip=10.0.3.15/24 confidant.gw=10.0.3.2 confidant.temp_disk.allow_reset=1 confidant.allow_reset=true ` +
		`confidant.temp_disk.swap_size=1G confidant.temp_disk.mkfs=/tmp/evil -- confidant.modules_file=/x`
	cfg, err := Parse([]byte(minimal+"network:\n  address: 10.0.2.15/24\n"), cmdline, log)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.VerifierURL.String() != "https://10.0.2.2:8443" || cfg.AllowPlainHTTP || cfg.CAFile != DefaultCAFile ||
		cfg.DebugShell || cfg.TEE != TEEAuto || cfg.OnFailure != PowerOff || cfg.KeyName != "os-disk" ||
		cfg.ModulesFile != DefaultModulesFile || cfg.TempAllowReset || cfg.TempSwapSize != 0 || cfg.TempMkfs != nil {
		t.Errorf("the command line widened the configuration: %+v", cfg)
	}
	if cfg.OSDiskUUID != "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee" || cfg.TempDevice != "/dev/vdc" ||
		cfg.Address != netip.MustParsePrefix("10.0.3.15/24") || cfg.Gateway != netip.MustParseAddr("10.0.3.2") {
		t.Errorf("allowed keys not applied: %+v", cfg)
	}
	wantSet := []string{CmdlineOSDiskUUID, CmdlineTempDisk, CmdlineIP, CmdlineGateway}
	if !slices.Equal(cfg.FromCmdline, wantSet) {
		t.Errorf("FromCmdline %q, want %q", cfg.FromCmdline, wantSet)
	}
	for _, key := range []string{"confidant.verifier.url", "confidant.verifier", "confidant.allow_plain_http",
		"confidant.ca_file", "confidant.debug_shell", "confidant.debug", "confidant.tee", "confidant.on_failure",
		"confidant.key_name", "confidant.modules_file", "confidant.temp_disk.allow_reset", "confidant.allow_reset",
		"confidant.temp_disk.swap_size", "confidant.temp_disk.mkfs"} {
		if !strings.Contains(logs.String(), "level=WARN msg=\"ignoring kernel command line key") ||
			!strings.Contains(logs.String(), "key="+key+" ") {
			t.Errorf("no warning for %s:\n%s", key, logs.String())
		}
	}
	if strings.Contains(logs.String(), "evil") {
		t.Errorf("ignored values were logged:\n%s", logs.String())
	}
	if !strings.Contains(logs.String(), "overrides the configuration file") {
		t.Errorf("override of network.address not logged:\n%s", logs.String())
	}
}

func TestParseCmdline(t *testing.T) {
	got := ParseCmdline("  a=1 b \"c=x y\" d=\"p q\"\tconfidant.ip=10.0.2.15/24 e= =f\n")
	want := []Param{
		{Key: "a", Value: "1", HasValue: true}, {Key: "b"}, {Key: "c", Value: "x y", HasValue: true},
		{Key: "d", Value: "p q", HasValue: true}, {Key: "confidant.ip", Value: "10.0.2.15/24", HasValue: true},
		{Key: "e", Value: "", HasValue: true},
	}
	if !slices.Equal(got, want) {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
}

func FuzzParseCmdline(f *testing.F) {
	f.Add(`console=ttyS0 "confidant.ip=1.2.3.4/8" confidant.gw="1.2.3.1" x`)
	f.Add("\"\"\"=\x00 a")
	f.Fuzz(func(t *testing.T, s string) {
		for _, p := range ParseCmdline(s) {
			if p.Key == "" || strings.Contains(p.Key, "\"") {
				t.Fatalf("bad key %q", p.Key)
			}
			if !p.HasValue && p.Value != "" {
				t.Fatalf("value without '='")
			}
		}
		// Whatever the command line, it never turns on what it may not.
		cfg, err := Parse([]byte(minimal), s, discard())
		if err == nil && (cfg.DebugShell || cfg.AllowPlainHTTP || cfg.VerifierURL.String() != "https://10.0.2.2:8443" || cfg.TEE != TEEAuto ||
			cfg.TempAllowReset || cfg.TempSwapSize != 0 || cfg.TempMkfs != nil || cfg.TempMkswap != nil) {
			t.Fatalf("command line %q widened the config", s)
		}
	})
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(minimal), "")
	f.Add([]byte(full), "confidant.ip=10.0.2.16/24")
	f.Add([]byte("a: &a [*a]"), "")
	f.Fuzz(func(t *testing.T, data []byte, cmdline string) {
		cfg, err := Parse(data, cmdline, discard())
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v does not match ErrInvalid", err)
			}
			return
		}
		if cfg.VerifierURL == nil || cfg.OSDiskUUID == "" || cfg.KeyName == "" {
			t.Fatalf("valid config lacks required values: %+v", cfg)
		}
		if cfg.VerifierURL.Scheme == "http" && !cfg.AllowPlainHTTP {
			t.Fatal("plain http accepted without allow_plain_http")
		}
	})
}
