package build

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/confidant-cvm/confidant/images/internal/encrypt"
	"github.com/confidant-cvm/confidant/images/internal/keyregistry"
	"github.com/confidant-cvm/confidant/images/internal/measure"
	"github.com/confidant-cvm/confidant/shared/initramfs"
)

func goodAgentConfig() AgentConfig {
	return AgentConfig{VerifierURL: "http://10.0.2.100:8443", AllowPlainHTTP: true, KeyName: "os-disk", TEE: TEESim}
}

func TestAgentConfigCheck(t *testing.T) {
	tests := map[string]struct {
		mod    func(*AgentConfig)
		haveCA bool
		errs   int
	}{
		"good":                  {},
		"https with CA":         {mod: func(c *AgentConfig) { c.VerifierURL = "https://10.0.2.100:8443"; c.AllowPlainHTTP = false }, haveCA: true},
		"https without CA":      {mod: func(c *AgentConfig) { c.VerifierURL = "https://10.0.2.100:8443" }, errs: 1},
		"http not allowed":      {mod: func(c *AgentConfig) { c.AllowPlainHTTP = false }, errs: 1},
		"no URL":                {mod: func(c *AgentConfig) { c.VerifierURL = "" }, errs: 1},
		"ftp":                   {mod: func(c *AgentConfig) { c.VerifierURL = "ftp://10.0.2.100/" }, errs: 1},
		"URL with user":         {mod: func(c *AgentConfig) { c.VerifierURL = "http://u:p@10.0.2.100/" }, errs: 1},
		"URL with query":        {mod: func(c *AgentConfig) { c.VerifierURL = "http://10.0.2.100/?x=1" }, errs: 1},
		"no key name":           {mod: func(c *AgentConfig) { c.KeyName = "" }, errs: 1},
		"bad key name":          {mod: func(c *AgentConfig) { c.KeyName = "../etc" }, errs: 1},
		"unknown tee":           {mod: func(c *AgentConfig) { c.TEE = "sgx" }, errs: 1},
		"temp disk not in /dev": {mod: func(c *AgentConfig) { c.TempDisk = "/tmp/disk" }, errs: 1},
		"temp disk escapes":     {mod: func(c *AgentConfig) { c.TempDisk = "/dev/../etc/passwd" }, errs: 1},
		"bad address":           {mod: func(c *AgentConfig) { c.Address = "10.0.2.15" }, errs: 1},
		"loopback address":      {mod: func(c *AgentConfig) { c.Address = "127.0.0.2/8" }, errs: 1},
		"gateway no address":    {mod: func(c *AgentConfig) { c.Gateway = "10.0.2.2" }, errs: 1},
		"bad gateway":           {mod: func(c *AgentConfig) { c.Address = "10.0.2.15/24"; c.Gateway = "gw" }, errs: 1},
		"bad on failure":        {mod: func(c *AgentConfig) { c.OnFailure = "halt" }, errs: 1},
		"swap":                  {mod: func(c *AgentConfig) { c.TempDisk = "/dev/vdb"; c.SwapSize = 64 << 20 }},
		"swap without temp":     {mod: func(c *AgentConfig) { c.SwapSize = 64 << 20 }, errs: 1},
		"swap too small":        {mod: func(c *AgentConfig) { c.TempDisk = "/dev/vdb"; c.SwapSize = 4096 }, errs: 1},
		"everything wrong":      {mod: func(c *AgentConfig) { *c = AgentConfig{TEE: "x", OnFailure: "x"} }, errs: 4},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			c := goodAgentConfig()
			if tc.mod != nil {
				tc.mod(&c)
			}
			errs := c.check(tc.haveCA)
			if len(errs) != tc.errs {
				t.Fatalf("check = %v, want %d problems", errs, tc.errs)
			}
			for _, err := range errs {
				if !errors.Is(err, ErrSpec) {
					t.Errorf("%v is not ErrSpec", err)
				}
			}
		})
	}
}

func TestAgentConfigYAML(t *testing.T) {
	c := AgentConfig{VerifierURL: "https://10.0.2.100:8443", TokenAudience: "aud", KeyName: "k1",
		TempDisk: "/dev/vdb", SwapSize: 1 << 30, Address: "10.0.2.15/24", Gateway: "10.0.2.2", OnFailure: "reboot"}
	b, err := c.YAML("3f1c2b6a-1111-4222-8333-444455556666")
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := yaml.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"verifier":   map[string]any{"url": "https://10.0.2.100:8443", "token_audience": "aud"},
		"key_name":   "k1",
		"os_disk":    map[string]any{"luks_uuid": "3f1c2b6a-1111-4222-8333-444455556666"},
		"temp_disk":  map[string]any{"device": "/dev/vdb", "swap_size": 1 << 30},
		"tee":        "auto",
		"network":    map[string]any{"address": "10.0.2.15/24", "gateway": "10.0.2.2"},
		"on_failure": "reboot",
	}
	gj, _ := json.Marshal(got)
	wj, _ := json.Marshal(want)
	if !bytes.Equal(gj, wj) {
		t.Errorf("YAML decodes to %s\nwant %s", gj, wj)
	}
	// Minimal: no optional sections.
	b, err = goodAgentConfig().YAML("u")
	if err != nil {
		t.Fatal(err)
	}
	for _, absent := range []string{"temp_disk", "network", "on_failure", "token_audience"} {
		if strings.Contains(string(b), absent) {
			t.Errorf("minimal configuration has %s:\n%s", absent, b)
		}
	}
}

func TestCheckCmdlineUUID(t *testing.T) {
	const u = "3f1c2b6a-1111-4222-8333-444455556666"
	for cmdline, wantErr := range map[string]bool{
		"console=ttyS0": false,
		"console=ttyS0 confidant.os_disk_uuid=" + u:           false,
		"confidant.os_disk_uuid=" + strings.ToUpper(u):        false,
		"confidant.os_disk_uuid=\"" + u + "\"":                false,
		"confidant.os_disk_uuid=00000000-0000-4000-8000-0000": true,
		"a confidant.os_disk_uuid= b":                         true,
	} {
		if err := checkCmdlineUUID(cmdline, u); (err != nil) != wantErr || (err != nil && !errors.Is(err, ErrSpec)) {
			t.Errorf("checkCmdlineUUID(%q) = %v, want error %v", cmdline, err, wantErr)
		}
	}
}

func TestReferenceValues(t *testing.T) {
	m := &Manifest{Name: "demo", Version: "1.2", Measurements: []measure.Measurement{
		{Kind: measure.KindSim, Measurement: "aa", VCPUs: 1, VCPUType: "EPYC-v4"},
		{Kind: measure.KindSim, Measurement: "bb", VCPUs: 2, VCPUType: "EPYC-v4"},
		{Kind: measure.KindSNP, Measurement: "cc", VCPUs: 4, VCPUType: "EPYC-Milan"},
	}}
	b, err := referenceValues(m)
	if err != nil {
		t.Fatal(err)
	}
	want := `{
  "version": 1,
  "sev-snp": {
    "measurements": {
      "cc": {
        "name": "demo",
        "version": "1.2",
        "vcpus": 4,
        "vcpu_type": "EPYC-Milan"
      }
    }
  },
  "sim-sev-snp": {
    "measurements": {
      "aa": {
        "name": "demo",
        "version": "1.2",
        "vcpus": 1,
        "vcpu_type": "EPYC-v4"
      },
      "bb": {
        "name": "demo",
        "version": "1.2",
        "vcpus": 2,
        "vcpu_type": "EPYC-v4"
      }
    }
  }
}
`
	if string(b) != want {
		t.Errorf("reference values:\n%s\nwant\n%s", b, want)
	}
	m.Measurements = append(m.Measurements, measure.Measurement{Kind: "tdx", Measurement: "dd"})
	if _, err := referenceValues(m); err == nil {
		t.Error("an unknown kind was accepted")
	}
}

// TestSpecCheck: every problem is found before anything is written.
func TestSpecCheck(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "disk.key")
	if _, err := encrypt.CreateKeyFile(key, nil); err != nil {
		t.Fatal(err)
	}
	full := filepath.Join(dir, "full")
	if err := os.MkdirAll(filepath.Join(full, "x"), 0o755); err != nil {
		t.Fatal(err)
	}
	registry, err := keyregistry.NewClient(filepath.Join(dir, "never-asked.sock"), 0)
	if err != nil {
		t.Fatal(err)
	}
	good := func() Spec {
		return Spec{Name: "demo", Version: "1", RootFS: dir, Kernel: "/k", Agent: "/a", Out: filepath.Join(dir, "out"),
			KeyFile: key, AgentConfig: goodAgentConfig(), Cmdline: "console=ttyS0", VCPUs: []int{2}, Boot: BootDirect}
	}
	tests := map[string]struct {
		mod  func(*Spec)
		errs int
	}{
		"good":                      {},
		"empty out dir is fine":     {mod: func(s *Spec) { s.Out = filepath.Join(full, "x") }},
		"bad name":                  {mod: func(s *Spec) { s.Name = "my image" }, errs: 1},
		"no version":                {mod: func(s *Spec) { s.Version = "" }, errs: 1},
		"missing paths":             {mod: func(s *Spec) { s.RootFS, s.Kernel, s.Agent = "", "", "" }, errs: 3},
		"rootfs size not MiB":       {mod: func(s *Spec) { s.RootFSSize = 1000 }, errs: 1},
		"modules without dir":       {mod: func(s *Spec) { s.Modules = []string{"virtio_blk"} }, errs: 1},
		"cmdline with newline":      {mod: func(s *Spec) { s.Cmdline = "a\nb" }, errs: 1},
		"cmdline too long":          {mod: func(s *Spec) { s.Cmdline = strings.Repeat("a", maxCmdline+1) }, errs: 1},
		"bad uuid":                  {mod: func(s *Spec) { s.UUID = "1234" }, errs: 1},
		"no vcpus":                  {mod: func(s *Spec) { s.VCPUs = nil }, errs: 1},
		"too many vcpus":            {mod: func(s *Spec) { s.VCPUs = []int{2, 65, 0} }, errs: 2},
		"vcpus twice":               {mod: func(s *Spec) { s.VCPUs = []int{2, 4, 2} }, errs: 1},
		"sim with other vcpu type":  {mod: func(s *Spec) { s.VCPUType = "EPYC-Milan" }, errs: 1},
		"tdx":                       {mod: func(s *Spec) { s.AgentConfig.TEE = TEETDXGuest }, errs: 1},
		"snp without ovmf":          {mod: func(s *Spec) { s.AgentConfig.TEE = TEEAuto }, errs: 1},
		"snp with ovmf":             {mod: func(s *Spec) { s.AgentConfig.TEE = TEESEVGuest; s.Firmware = "/ovmf" }},
		"out not empty":             {mod: func(s *Spec) { s.Out = full }, errs: 1},
		"out is a file":             {mod: func(s *Spec) { s.Out = key }, errs: 2}, // and the key is "inside" it
		"out parent missing":        {mod: func(s *Spec) { s.Out = filepath.Join(dir, "no", "out") }, errs: 1},
		"key inside out":            {mod: func(s *Spec) { s.Out = dir }, errs: 2}, // dir is not empty either
		"key inside future out":     {mod: func(s *Spec) { s.GenerateKey = true; s.KeyFile = filepath.Join(s.Out, "k") }, errs: 1},
		"key via dot-dot into out":  {mod: func(s *Spec) { s.GenerateKey = true; s.KeyFile = filepath.Join(full, "..", "out", "k") }, errs: 1},
		"key next to out is fine":   {mod: func(s *Spec) { s.GenerateKey = true; s.KeyFile = s.Out + "2.key" }},
		"generate over existing":    {mod: func(s *Spec) { s.GenerateKey = true }, errs: 1},
		"key missing":               {mod: func(s *Spec) { s.KeyFile = filepath.Join(dir, "absent") }, errs: 1},
		"agent config problems too": {mod: func(s *Spec) { s.AgentConfig.KeyName = "" }, errs: 1},
		"no key file":               {mod: func(s *Spec) { s.KeyFile = "" }, errs: 1},
		"unknown key origin":        {mod: func(s *Spec) { s.KeyOrigin = "hsm" }, errs: 1},
		"platform key":              {mod: func(s *Spec) { s.KeyOrigin, s.KeyFile, s.Registry = KeyOriginPlatform, "", registry }},
		"platform key, no registry": {mod: func(s *Spec) { s.KeyOrigin, s.KeyFile = KeyOriginPlatform, "" }, errs: 1},
		"platform key, generate": {mod: func(s *Spec) {
			s.KeyOrigin, s.KeyFile, s.Registry, s.GenerateKey = KeyOriginPlatform, filepath.Join(dir, "new.key"), registry, true
		}, errs: 1},
		"platform key, recovery copy":        {mod: func(s *Spec) { s.KeyOrigin, s.KeyFile, s.Registry = KeyOriginPlatform, s.Out+".key", registry }},
		"platform key, recovery copy exists": {mod: func(s *Spec) { s.KeyOrigin, s.Registry = KeyOriginPlatform, registry }, errs: 1},
		"platform key, recovery copy in out": {mod: func(s *Spec) {
			s.KeyOrigin, s.KeyFile, s.Registry = KeyOriginPlatform, filepath.Join(s.Out, "k"), registry
		}, errs: 1},
		"release policy":           {mod: func(s *Spec) { s.ReleasePolicy = []byte("package p\n") }},
		"release policy empty":     {mod: func(s *Spec) { s.ReleasePolicy = []byte{} }, errs: 1},
		"release policy not UTF-8": {mod: func(s *Spec) { s.ReleasePolicy = []byte{0xff} }, errs: 1},
		"temp disk with busybox":   {mod: func(s *Spec) { s.AgentConfig.TempDisk = "/dev/vdb"; s.Busybox = "/bin/busybox" }},
		"temp disk, busybox added": {mod: func(s *Spec) {
			s.AgentConfig.TempDisk = "/dev/vdb"
			s.Extra = []initramfs.Extra{{Src: "/x", Dst: "/bin//busybox"}}
		}},
		"temp disk without busybox": {mod: func(s *Spec) { s.AgentConfig.TempDisk = "/dev/vdb" }, errs: 1},
		"uefi":                      {mod: func(s *Spec) { s.Boot, s.SecureBootKey, s.SecureBootCert = BootUEFI, "/k.pem", "/c.pem" }},
		"uefi by default":           {mod: func(s *Spec) { s.Boot, s.SecureBootKey, s.SecureBootCert = "", "/k.pem", "/c.pem" }},
		"uefi without key":          {mod: func(s *Spec) { s.Boot, s.SecureBootCert = BootUEFI, "/c.pem" }, errs: 1},
		"default without key":       {mod: func(s *Spec) { s.Boot = "" }, errs: 1},
		"unknown boot":              {mod: func(s *Spec) { s.Boot = "bios" }, errs: 1},
		"direct with uefi parts":    {mod: func(s *Spec) { s.SecureBootKey, s.UKIStub, s.UEFIVars, s.OSRelease = "/k", "/s", "/v", "/o" }, errs: 4},
		"busybox twice": {mod: func(s *Spec) {
			s.Busybox = "/bin/busybox"
			s.Extra = []initramfs.Extra{{Src: "/x", Dst: "/bin/busybox"}}
		}, errs: 1},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			s := good()
			if tc.mod != nil {
				tc.mod(&s)
			}
			_, err := s.check()
			var n int
			if err != nil {
				n = len(err.(interface{ Unwrap() []error }).Unwrap())
				if !errors.Is(err, ErrSpec) {
					t.Errorf("%v is not ErrSpec", err)
				}
			}
			if n != tc.errs {
				t.Errorf("check found %d problems, want %d: %v", n, tc.errs, err)
			}
		})
	}
}

// TestBuildFailsCleanly: a build that fails at any step leaves neither the
// output directory nor staging files, and removes a key it generated.
func TestBuildFailsCleanly(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "bigroot")
	if err := os.MkdirAll(big, 0o755); err != nil {
		t.Fatal(err)
	}
	// Not zeros: mke2fs -d would store them sparse.
	if err := os.WriteFile(filepath.Join(big, "blob"), bytes.Repeat([]byte{1}, 24<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	notExt4 := filepath.Join(dir, "plain.img")
	if err := os.WriteFile(notExt4, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	agent := filepath.Join(dir, "agent") // not an ELF: refused by the initramfs builder
	if err := os.WriteFile(agent, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	kernel := filepath.Join(dir, "vmlinuz")
	if err := os.WriteFile(kernel, []byte("kernel"), 0o644); err != nil {
		t.Fatal(err)
	}
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := map[string]struct {
		ctx     context.Context
		mod     func(*Spec)
		wantErr error
	}{
		"agent not static":   {wantErr: initramfs.ErrNotStatic},
		"kernel missing":     {mod: func(s *Spec) { s.Agent = "/bin/busybox"; s.Kernel = filepath.Join(dir, "absent") }, wantErr: os.ErrNotExist},
		"rootfs too small":   {mod: func(s *Spec) { s.Agent = "/bin/busybox"; s.RootFS = big; s.RootFSSize = 8 << 20 }, wantErr: ErrMkfs},
		"rootfs not ext4":    {mod: func(s *Spec) { s.Agent = "/bin/busybox"; s.RootFS = notExt4 }, wantErr: encrypt.ErrNotExt4},
		"canceled":           {ctx: canceled, mod: func(s *Spec) { s.Agent = "/bin/busybox" }, wantErr: context.Canceled},
		"firmware missing":   {mod: func(s *Spec) { s.Agent = "/bin/busybox"; s.Firmware = filepath.Join(dir, "absent") }, wantErr: os.ErrNotExist},
		"busybox dynamic":    {mod: func(s *Spec) { s.Agent = "/bin/busybox"; s.Busybox = "/bin/ls" }, wantErr: ErrSpec},
		"busybox not ELF":    {mod: func(s *Spec) { s.Agent = "/bin/busybox"; s.Busybox = kernel }, wantErr: ErrSpec},
		"ca not certificate": {mod: func(s *Spec) { s.Agent = "/bin/busybox"; s.CA = kernel }, wantErr: initramfs.ErrBadCA},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			parent := t.TempDir()
			s := Spec{Name: "demo", Version: "1", RootFS: root, Kernel: kernel, Agent: agent,
				Out: filepath.Join(parent, "out"), KeyFile: filepath.Join(dir, name+".key"), GenerateKey: true,
				AgentConfig: goodAgentConfig(), VCPUs: []int{1}, Boot: BootDirect}
			if tc.mod != nil {
				tc.mod(&s)
			}
			ctx := tc.ctx
			if ctx == nil {
				ctx = context.Background()
			}
			m, err := Build(ctx, s, slog.New(slog.NewTextHandler(io.Discard, nil)))
			if err == nil {
				t.Fatalf("Build succeeded: %+v", m)
			}
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Errorf("Build: %v, want %v", err, tc.wantErr)
			}
			if ents, _ := os.ReadDir(parent); len(ents) != 0 {
				t.Errorf("a failed build left %v", ents)
			}
			if _, err := os.Stat(s.KeyFile); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("a failed build left its generated key: %v", err)
			}
		})
	}
}
