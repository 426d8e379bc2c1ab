package cli

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage/inmem"

	"github.com/confidant-cvm/confidant/images/internal/build"
	"github.com/confidant-cvm/confidant/images/internal/encrypt"
)

// repoRoot is the module's root directory.
func repoRoot(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil || !strings.HasSuffix(strings.TrimSpace(string(out)), "go.mod") {
		t.Fatalf("go env GOMOD: %q, %v", out, err)
	}
	return filepath.Dir(strings.TrimSpace(string(out)))
}

// goBuild builds a command of this module into dir.
func goBuild(t *testing.T, dir, pkg string, cgo bool) string {
	t.Helper()
	bin := filepath.Join(dir, filepath.Base(pkg))
	cmd := exec.Command("go", "build", "-o", bin, "./"+pkg)
	cmd.Dir = repoRoot(t)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if cgo {
		cmd.Env = append(os.Environ(), "CGO_ENABLED=1")
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, out)
	}
	return bin
}

// cloudKernel is the installed Debian cloud kernel.
func cloudKernel(t *testing.T) string {
	t.Helper()
	ks, _ := filepath.Glob("/boot/vmlinuz-*-cloud-amd64")
	if len(ks) == 0 {
		t.Fatal("no cloud kernel (install linux-image-cloud-amd64)")
	}
	slices.Sort(ks)
	return ks[0]
}

// tinyRoot makes a directory root filesystem.
func tinyRoot(t *testing.T, dir string) string {
	t.Helper()
	root := filepath.Join(dir, "rootfs")
	for name, content := range map[string]string{
		"sbin/init":      "#!/bin/sh\necho hello from the encrypted root\npoweroff -f\n",
		"etc/hostname":   "tiny\n",
		"etc/os-release": "NAME=tiny\n",
	} {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

type buildFixture struct {
	dir, agent, kernel, root string
}

func newBuildFixture(t *testing.T) buildFixture {
	t.Helper()
	dir := t.TempDir()
	return buildFixture{dir: dir, agent: goBuild(t, dir, "agent/cmd/confidant-agent", false), kernel: cloudKernel(t), root: tinyRoot(t, dir)}
}

func (fx buildFixture) args(out, key string, extra ...string) []string {
	return fx.argsNoKey(out, append([]string{"--key-file", key}, extra...)...)
}

// argsNoKey are the arguments of a sim build (boot direct) without
// --key-file.
func (fx buildFixture) argsNoKey(out string, extra ...string) []string {
	return append([]string{"build", "--name", "tiny", "--image-version", "1.0",
		"--rootfs", fx.root, "--kernel", fx.kernel, "--agent", fx.agent, "--tee", "sim",
		"--verifier-url", "http://10.0.2.100:8443", "--allow-plain-http",
		"--key-name", "tiny-os", "--temp-disk", "/dev/vdb", "--boot", "direct", "--out", out}, extra...)
}

func sha256File(t *testing.T, path string) (string, int64) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), int64(len(b))
}

// cpioCat extracts one member of a gzip-compressed newc archive with GNU
// cpio.
func cpioCat(t *testing.T, archive, member string) []byte {
	t.Helper()
	cmd := exec.Command("sh", "-c", `gzip -dc < "$1" | cpio -i --quiet --to-stdout "$2"`, "sh", archive, member)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("extracting %s: %v", member, err)
	}
	return out
}

// hostdManifest is the manifest as confidant-hostd reads it
// (hostd/internal/spec Manifest).
type hostdManifest struct {
	Kernel  string `json:"kernel"`
	Initrd  string `json:"initrd"`
	Cmdline string `json:"cmdline"`
	OSDisk  string `json:"os_disk"`
}

type referenceFile struct {
	Version json.Number `json:"version"`
	Sim     struct {
		Measurements map[string]build.ReferenceValue `json:"measurements"`
	} `json:"sim-sev-snp"`
}

func TestBuildCommand(t *testing.T) {
	fx := newBuildFixture(t)
	out := filepath.Join(fx.dir, "out")
	key := filepath.Join(fx.dir, "tiny.key")
	rec := filepath.Join(fx.dir, "recovery.txt")
	if err := os.WriteFile(rec, []byte("recovery words\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	const uuid = "0b7d2c1e-5a4f-4e3d-9c2b-1a0f9e8d7c6b"
	stdout, stderr, err := runStreams(t, fx.args(out, key, "--generate-key", "--vcpus", "1,2", "--uuid", uuid,
		"--recovery-passphrase-file", rec, "--source-date-epoch", "1700000000", "--swap-size", "64M")...)
	if err != nil {
		t.Fatalf("build: %v\n%s", err, stderr)
	}
	for _, want := range []string{"built " + out, "luks uuid  " + uuid, "sim-sev-snp measurement (1 vCPUs): ",
		"sim-sev-snp measurement (2 vCPUs): ", "disk key: " + key, `register the disk key with the verifier as key "tiny-os"`,
		"release policy: " + filepath.Join(out, "release-policy.rego") + " (sha256 ",
		"confidant-verifier admin key import tiny-os --key-file " + key + " --release-policy " + filepath.Join(out, "release-policy.rego") + "\n"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("stdout lacks %q:\n%s", want, stdout)
		}
	}
	for _, want := range []string{"build: encrypting the OS disk", "encrypting: 100%"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	keyBytes, err := encrypt.ReadKeyFile(key)
	if err != nil {
		t.Fatalf("generated key file: %v", err)
	}
	if bytes.Contains([]byte(stdout+stderr), keyBytes) || strings.Contains(stdout+stderr, hex.EncodeToString(keyBytes)) {
		t.Fatal("the key was printed")
	}

	// The directory holds exactly the artifacts; the key is not among them.
	ents, err := os.ReadDir(out)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	wantNames := []string{"agent.yaml", "initrd.img", "manifest.json", "os.img", "reference-values.json", "release-policy.rego", "vmlinuz"}
	if !slices.Equal(names, wantNames) {
		t.Errorf("output holds %v, want %v", names, wantNames)
	}
	if ents, _ := os.ReadDir(fx.dir); slices.ContainsFunc(ents, func(e os.DirEntry) bool { return strings.HasPrefix(e.Name(), ".out") }) {
		t.Error("staging directory left behind")
	}

	// The manifest: hostd's fields, and the digests of every file.
	mb, err := os.ReadFile(filepath.Join(out, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	var hm hostdManifest
	if err := json.Unmarshal(mb, &hm); err != nil {
		t.Fatal(err)
	}
	if hm != (hostdManifest{Kernel: "vmlinuz", Initrd: "initrd.img", Cmdline: DefaultCmdline, OSDisk: "os.img"}) {
		t.Errorf("hostd's view of the manifest: %+v", hm)
	}
	var m build.Manifest
	dec := json.NewDecoder(bytes.NewReader(mb))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("decoding manifest: %v", err)
	}
	if m.Format != 1 || m.Name != "tiny" || m.Version != "1.0" || !strings.HasPrefix(m.Tool, "confidant-image ") ||
		m.KeyName != "tiny-os" || m.LUKSUUID != uuid || m.TEE != "sim" || m.VerifierURL != "http://10.0.2.100:8443" ||
		m.SourceDateEpoch != 1700000000 || m.AgentConfig != "agent.yaml" || m.ReferenceValues != "reference-values.json" ||
		m.KeyOrigin != "customer" || m.KeyVersion != 0 || m.ReleasePolicy != "release-policy.rego" || m.ReleasePolicySHA256 != m.Files["release-policy.rego"].SHA256 {
		t.Errorf("manifest = %+v", m)
	}
	if len(m.Files) != 6 {
		t.Errorf("manifest lists %d files, want 6", len(m.Files))
	}
	for name, d := range m.Files {
		sum, size := sha256File(t, filepath.Join(out, name))
		if d.SHA256 != sum || d.Size != size {
			t.Errorf("manifest digest of %s = %+v, file has %s %d", name, d, sum, size)
		}
	}
	if sum, _ := sha256File(t, fx.kernel); m.Files["vmlinuz"].SHA256 != sum {
		t.Error("vmlinuz is not the kernel")
	}
	if sum, _ := sha256File(t, fx.agent); m.Agent.SHA256 != sum {
		t.Error("manifest agent digest is not the agent's")
	}

	// The disk opens with the key (keyslot 0) and the recovery passphrase,
	// and has the UUID the agent is told.
	disk := filepath.Join(out, "os.img")
	if err := cryptsetupTest(disk, key, "--key-slot", "0"); err != nil {
		t.Errorf("cryptsetup with the key file: %v", err)
	}
	bare := filepath.Join(fx.dir, "recovery.bare")
	os.WriteFile(bare, []byte("recovery words"), 0o600)
	if err := cryptsetupTest(disk, bare, "--key-slot", "1"); err != nil {
		t.Errorf("cryptsetup with the recovery passphrase: %v", err)
	}
	if err := cryptsetupTest(disk, rec); err == nil {
		t.Error("cryptsetup opened the disk with a wrong passphrase")
	}
	if got, err := exec.Command("cryptsetup", "luksUUID", disk).Output(); err != nil || strings.TrimSpace(string(got)) != uuid {
		t.Errorf("luksUUID %q, %v", got, err)
	}

	// The agent accepts its configuration, which names the disk; the
	// initramfs holds that configuration and the agent as /init.
	cfg := filepath.Join(out, "agent.yaml")
	if got, err := exec.Command(fx.agent, "--check-config", cfg).CombinedOutput(); err != nil {
		t.Errorf("confidant-agent --check-config: %v\n%s", err, got)
	}
	cfgBytes, _ := os.ReadFile(cfg)
	for _, want := range []string{"luks_uuid: " + uuid, "key_name: tiny-os", "tee: sim", "device: /dev/vdb", "swap_size: 67108864", "allow_plain_http: true", "address: 10.0.2.15/24"} {
		if !strings.Contains(string(cfgBytes), want) {
			t.Errorf("agent.yaml lacks %q:\n%s", want, cfgBytes)
		}
	}
	initrd := filepath.Join(out, "initrd.img")
	if got := cpioCat(t, initrd, "etc/confidant/agent.yaml"); !bytes.Equal(got, cfgBytes) {
		t.Error("the initramfs holds another agent configuration")
	}
	if agentBytes, _ := os.ReadFile(fx.agent); !bytes.Equal(cpioCat(t, initrd, "init"), agentBytes) {
		t.Error("the initramfs /init is not the agent")
	}
	// With a temp disk, busybox for the agent's mke2fs and mkswap.
	if bb, _ := os.ReadFile("/bin/busybox"); !bytes.Equal(cpioCat(t, initrd, "bin/busybox"), bb) {
		t.Error("the initramfs lacks /bin/busybox")
	}
	if mods := cpioCat(t, initrd, "etc/confidant/modules"); !strings.Contains(string(mods), "dm-crypt.ko") {
		t.Errorf("module list lacks dm-crypt:\n%s", mods)
	}

	// The reference values hold what measure --sim prints for the
	// manifest's inputs, one per vCPU count, in the verifier's format.
	rb, err := os.ReadFile(filepath.Join(out, "reference-values.json"))
	if err != nil {
		t.Fatal(err)
	}
	var refs referenceFile
	if err := json.Unmarshal(rb, &refs); err != nil {
		t.Fatal(err)
	}
	if refs.Version != "1" || len(refs.Sim.Measurements) != 2 || len(m.Measurements) != 2 {
		t.Fatalf("reference values:\n%s", rb)
	}
	man := filepath.Join(out, "manifest.json")
	for i, vcpus := range []string{"1", "2"} {
		got, stderr, err := runStreams(t, "measure", "--sim", "--manifest", man, "--vcpus", vcpus)
		if err != nil {
			t.Fatalf("measure: %v\n%s", err, stderr)
		}
		hexm := strings.TrimSpace(got)
		rv, ok := refs.Sim.Measurements[hexm]
		if !ok {
			t.Errorf("%s vCPUs: measurement %s is not in the reference values", vcpus, hexm)
		}
		if rv.Name != "tiny" || rv.Version != "1.0" || rv.VCPUType != "EPYC-v4" || strings.TrimSpace(vcpus) != map[int]string{1: "1", 2: "2"}[rv.VCPUs] {
			t.Errorf("reference value %+v", rv)
		}
		if m.Measurements[i].Measurement != hexm || m.Measurements[i].Cmdline != DefaultCmdline {
			t.Errorf("manifest measurement %d = %+v, measure printed %s", i, m.Measurements[i], hexm)
		}
		// The shipped development policy accepts it, and only it.
		if reasons := appraiseSim(t, rb, hexm); slices.ContainsFunc(reasons, func(r string) bool { return strings.Contains(r, "measurement") }) {
			t.Errorf("sim_development.rego refuses the built measurement: %v", reasons)
		}
	}
	other := strings.Repeat("ab", 48)
	if reasons := appraiseSim(t, rb, other); !slices.Contains(reasons, "measurement "+other+" is not in the reference set") {
		t.Errorf("sim_development.rego accepts an unknown measurement: %v", reasons)
	}

	// Same inputs, same initramfs and measurements (the disk is new: fresh
	// salts and volume key).
	out2 := filepath.Join(fx.dir, "out2")
	if _, stderr, err := runStreams(t, fx.args(out2, key, "--vcpus", "1,2", "--uuid", uuid, "--source-date-epoch", "1700000000", "--swap-size", "64MiB")...); err != nil {
		t.Fatalf("second build: %v\n%s", err, stderr)
	}
	rb2, _ := os.ReadFile(filepath.Join(out2, "reference-values.json"))
	if s1, _ := sha256File(t, initrd); s1 != m.Files["initrd.img"].SHA256 || !bytes.Equal(rb, rb2) {
		t.Error("a second build with the same inputs measures differently")
	}
	if s1, _ := sha256File(t, filepath.Join(out2, "initrd.img")); s1 != m.Files["initrd.img"].SHA256 {
		t.Error("a second build with the same inputs made another initramfs")
	}
	if s1, _ := sha256File(t, filepath.Join(out2, "os.img")); s1 == m.Files["os.img"].SHA256 {
		t.Error("two encryptions gave the same disk")
	}
	if err := cryptsetupTest(filepath.Join(out2, "os.img"), key); err != nil {
		t.Errorf("second disk with the same key: %v", err)
	}
}

// appraiseSim evaluates policies/appraisal/sim_development.rego, as the
// verifier loads it (reference values at data.reference), over otherwise
// good evidence with the given measurement, and returns its reasons.
func appraiseSim(t *testing.T, reference []byte, measurement string) []string {
	t.Helper()
	src, err := os.ReadFile(filepath.Join(repoRoot(t), "policies", "appraisal", "sim_development.rego"))
	if err != nil {
		t.Fatal(err)
	}
	var ref map[string]any
	dec := json.NewDecoder(bytes.NewReader(reference))
	dec.UseNumber()
	if err := dec.Decode(&ref); err != nil {
		t.Fatal(err)
	}
	input := map[string]any{
		"kind": "sim-sev-snp",
		"tee": map[string]any{"kind": "sim-sev-snp", "simulated": true, "vmpl": 0, "measurement": measurement,
			"policy": map[string]any{"debug": false, "migration_agent": false, "smt": true}},
		"tpm":     map[string]any{"pcrs": map[string]any{}, "secure_boot": map[string]any{"known": true, "enabled": true}},
		"runtime": map[string]any{},
	}
	rs, err := rego.New(
		rego.Query("data.confidant.appraisal.sim_development.result"),
		rego.Module("sim_development.rego", string(src)),
		rego.Store(inmem.NewFromObject(map[string]any{"reference": ref})),
		rego.Input(input),
		rego.SetRegoVersion(ast.RegoV1),
		rego.StrictBuiltinErrors(true),
	).Eval(context.Background())
	if err != nil || len(rs) != 1 || len(rs[0].Expressions) != 1 {
		t.Fatalf("evaluating the policy: %v, %v", rs, err)
	}
	res, _ := rs[0].Expressions[0].Value.(map[string]any)
	var reasons []string
	for _, r := range res["reasons"].([]any) {
		reasons = append(reasons, r.(string))
	}
	return reasons
}

// TestBuildCommandFails: a failed build leaves nothing under --out and no
// staging directory, and removes the key it generated.
func TestBuildCommandFails(t *testing.T) {
	fx := newBuildFixture(t)
	existing := filepath.Join(fx.dir, "existing.key")
	if _, err := encrypt.CreateKeyFile(existing, nil); err != nil {
		t.Fatal(err)
	}
	notExt4 := filepath.Join(fx.dir, "random.img")
	if err := os.WriteFile(notExt4, bytes.Repeat([]byte("not ext4"), 1<<17), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := map[string]struct {
		extra   []string
		key     string // "": a new key, generated
		wantErr error
		wantOut string
	}{
		"bad kernel path":          {extra: []string{"--kernel", filepath.Join(fx.dir, "vmlinuz-absent"), "--modules-dir", "/lib/modules/" + strings.TrimPrefix(filepath.Base(fx.kernel), "vmlinuz-")}, wantErr: os.ErrNotExist},
		"kernel version unknown":   {extra: []string{"--kernel", fx.agent}, wantErr: ErrUsage},
		"unknown module":           {extra: []string{"--module", "no_such_module"}, wantOut: "no_such_module"},
		"https without ca":         {extra: []string{"--verifier-url", "https://10.0.2.100:8443"}, wantErr: build.ErrSpec},
		"http not allowed":         {extra: []string{"--allow-plain-http=false"}, wantErr: build.ErrSpec},
		"snp without ovmf":         {extra: []string{"--tee", "auto"}, wantErr: build.ErrSpec},
		"ovmf with sim":            {extra: []string{"--ovmf", amdSevSuffix}, wantErr: ErrUsage},
		"bad rootfs size":          {extra: []string{"--rootfs-size", "12345"}, wantErr: ErrUsage},
		"dynamic busybox":          {extra: []string{"--busybox", "/bin/ls"}, wantErr: build.ErrSpec},
		"temp disk, no busybox":    {extra: []string{"--busybox", ""}, wantErr: build.ErrSpec},
		"swap without temp disk":   {extra: []string{"--temp-disk", "", "--swap-size", "64M"}, wantErr: build.ErrSpec},
		"rootfs not ext4":          {extra: []string{"--rootfs", notExt4}, wantErr: encrypt.ErrNotExt4}, // after the key was generated
		"uuid override on cmdline": {extra: []string{"--cmdline", "console=ttyS0 confidant.os_disk_uuid=0b7d2c1e-5a4f-4e3d-9c2b-1a0f9e8d7c6b"}, wantErr: build.ErrSpec},
		"existing key, generate":   {key: existing, extra: []string{"--generate-key"}, wantErr: build.ErrSpec},
		"key inside out":           {key: "inside", wantErr: build.ErrSpec},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			parent := t.TempDir()
			out := filepath.Join(parent, "out")
			key, generate := tc.key, tc.key == ""
			switch key {
			case "":
				key = filepath.Join(t.TempDir(), "new.key")
			case "inside":
				key, generate = filepath.Join(out, "disk.key"), true
			}
			args := fx.args(out, key, tc.extra...)
			if generate {
				args = append(args, "--generate-key")
			}
			stdout, stderr, err := runStreams(t, args...)
			if err == nil {
				t.Fatalf("build succeeded:\n%s", stdout)
			}
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Errorf("error %v, want %v", err, tc.wantErr)
			}
			if !strings.Contains(err.Error()+stderr, tc.wantOut) {
				t.Errorf("error %q lacks %q", err.Error(), tc.wantOut)
			}
			if ents, _ := os.ReadDir(parent); len(ents) != 0 {
				t.Errorf("a failed build left %v next to --out", ents)
			}
			if key != existing {
				if _, err := os.Stat(key); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("a failed build left its generated key")
				}
			}
		})
	}

	// A non-empty --out is refused and left as it was.
	out := filepath.Join(t.TempDir(), "out")
	os.Mkdir(out, 0o755)
	precious := filepath.Join(out, "precious")
	os.WriteFile(precious, []byte("keep"), 0o644)
	if _, _, err := runStreams(t, fx.args(out, existing)...); !errors.Is(err, build.ErrSpec) || !strings.Contains(err.Error(), build.ErrOutputExists.Error()) {
		t.Errorf("build into a non-empty directory: %v", err)
	}
	if b, _ := os.ReadFile(precious); string(b) != "keep" {
		t.Error("the existing output was touched")
	}
	// An empty one is used.
	empty := filepath.Join(t.TempDir(), "out")
	os.Mkdir(empty, 0o755)
	if _, stderr, err := runStreams(t, fx.args(empty, existing)...); err != nil {
		t.Errorf("build into an empty directory: %v\n%s", err, stderr)
	}
}

// TestBuildBootsUnderHostd: confidant-hostd, given the built manifest,
// boots the image and reports the measurement that is in the reference
// values — the proof that build, measure and hostd agree on the inputs
// (files, command line, vCPU type and count; with boot uefi the OVMF code).
func TestBuildBootsUnderHostd(t *testing.T) {
	if testing.Short() {
		t.Skip("boots QEMU")
	}
	fx := newBuildFixture(t)
	hostd := goBuild(t, fx.dir, "hostd/cmd/confidant-hostd", false)

	// A short path: unix socket names are limited to 108 bytes.
	run, err := os.MkdirTemp("", "hostd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(run) })
	sock := filepath.Join(run, "h.sock")
	serve := exec.Command(hostd, "serve", "--state-dir", filepath.Join(run, "state"), "--socket", sock, "--stop-timeout", "2s")
	var serveLog bytes.Buffer
	serve.Stdout, serve.Stderr = &serveLog, &serveLog
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = serve.Process.Signal(os.Interrupt)
		done := make(chan error, 1)
		go func() { done <- serve.Wait() }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = serve.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("hostd log:\n%s", serveLog.String())
		}
	})
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("hostd socket never appeared")
		}
	}
	hostdCmd := func(t *testing.T, args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, hostd, append([]string{"--socket", sock}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("confidant-hostd %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	sbKey, sbCert := newSigningPair(t, fx.dir, "builder")
	for boot, tc := range map[string]struct {
		args     []string
		firmware string // the spec's
		cmdline  string // the manifest's
	}{
		"direct": {firmware: "firmware:\n  kind: seabios\n", cmdline: DefaultCmdline},
		"uefi":   {args: []string{"--boot", "uefi", "--secure-boot-key", sbKey, "--secure-boot-cert", sbCert}},
	} {
		t.Run(boot, func(t *testing.T) {
			out := filepath.Join(fx.dir, "img-"+boot)
			args := fx.args(out, filepath.Join(fx.dir, boot+".key"), append([]string{"--generate-key", "--vcpus", "1,3"}, tc.args...)...)
			if _, stderr, err := runStreams(t, args...); err != nil {
				t.Fatalf("build: %v\n%s", err, stderr)
			}
			var refs referenceFile
			rb, _ := os.ReadFile(filepath.Join(out, "reference-values.json"))
			if err := json.Unmarshal(rb, &refs); err != nil {
				t.Fatal(err)
			}
			name := "tiny-" + boot
			spec := filepath.Join(run, name+".yaml")
			if err := os.WriteFile(spec, []byte("name: "+name+"\ntee: sim\nvcpus: 3\nmemory: 256MiB\nimage:\n  manifest: "+
				filepath.Join(out, "manifest.json")+"\nverifier: 127.0.0.1:9\nvtpm: none\n"+tc.firmware), 0o644); err != nil {
				t.Fatal(err)
			}
			hostdCmd(t, "vm", "create", "-f", spec)
			hostdCmd(t, "vm", "start", name)
			var g struct {
				Spec struct {
					Image hostdManifest `json:"image"`
				} `json:"spec"`
				Status struct {
					Measurement string `json:"measurement"`
				} `json:"status"`
			}
			if err := json.Unmarshal([]byte(hostdCmd(t, "vm", "show", name, "--json")), &g); err != nil {
				t.Fatal(err)
			}
			hostdCmd(t, "vm", "delete", name)
			if g.Spec.Image.Cmdline != tc.cmdline || g.Spec.Image.OSDisk != filepath.Join(out, "os.img") {
				t.Errorf("hostd read the manifest as %+v", g.Spec.Image)
			}
			rv, ok := refs.Sim.Measurements[g.Status.Measurement]
			if !ok || rv.VCPUs != 3 {
				t.Errorf("hostd measured %q, not the reference value for 3 vCPUs: %s", g.Status.Measurement, rb)
			}
		})
	}
}

func TestHelp(t *testing.T) {
	for cmd, wants := range map[string][]string{
		"": {"build", "initramfs", "encrypt", "measure"},
		"build": {"Examples:", "confidant-image build", "manifest.json", "reference-values.json", "release-policy.rego", "--generate-key", "verbatim", "confidant-hostd",
			"--admin-socket", "--key-origin platform", "--release-policy", "confidant-verifier admin key import",
			"--boot", "--secure-boot-key", "--secure-boot-cert", "--uki-stub", "--ovmf-code", "--ovmf-vars", "--os-release",
			"uki.efi", "esp.img", "uefi-vars.fd", "openssl req -x509", "snakeoil", "development and tests only", "PCRs 0-3 are not predicted"},
		"encrypt": {"Examples:", "confidant-image encrypt", "--key-file", "cryptsetup open --test-passphrase", "0600", "LUKS UUID"},
		"measure": {"Examples:", "confidant-image measure --sim", "--ovmf", "EPYC-v4", "/usr/share/seabios/bios-256k.bin", "--output-format",
			"--uki", "--uefi-vars", "--json", "--pcrs", "PCR 7", "Firmware-only PCRs 0-3 are not predicted"},
		"initramfs": {"Examples:", "confidant-image initramfs"},
	} {
		args := []string{"--help"}
		if cmd != "" {
			args = []string{cmd, "--help"}
		}
		out, _, err := runStreams(t, args...)
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range wants {
			if !strings.Contains(out, want) {
				t.Errorf("%s --help lacks %q", cmd, want)
			}
		}
	}
}
