package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/confidant-cvm/confidant/shared/initramfs"
)

// bootTimeout bounds one QEMU boot (TCG: about 4 s to /init on an idle
// machine, modules and the agent's stages a few seconds more).
const bootTimeout = 50 * time.Second

// guest is what every boot of the test shares.
type guest struct {
	kernel     string
	modulesDir string
	agent      string
	osImage    string
	tmpImg     string
	osUUID     string
}

// TestBootInQEMU boots the real agent as /init of an initramfs built by our
// own builder, with the Debian cloud kernel and its modules, in QEMU (TCG),
// and reads what it did from the serial console.
func TestBootInQEMU(t *testing.T) {
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Fatalf("qemu-system-x86_64 is needed (apt-get install qemu-system-x86): %v", err)
	}
	g := prepareGuest(t)

	t.Run("attest fails when no verifier answers", func(t *testing.T) {
		t.Parallel()
		// A real vTPM (swtpm), and a "verifier" that accepts connections
		// and closes them: attest retries for the 2 s budget, then fails.
		out, connected := boot(t, qemu, g, g.osUUID, initramfs.DefaultModules(), startSwtpm(t))
		mustContain(t, out,
			"confidant-agent: [", "] started as PID 1",
			"mounted filesystems: /proc /sys /dev /sys/kernel/security /run",
			"live in /proc/modules: virtio_ring virtio ",
			" dm_mod dm_crypt ",
			"mounted configfs on /sys/kernel/config",
			"network up: lo, eth0 10.0.2.15/24 via 10.0.2.2",
			"TEE interface: sim at /dev/vport",
			"OS disk: /dev/vda (LUKS UUID "+g.osUUID+")",
			"temp disk: /dev/vdb (",
			"attest: vTPM ready (attestation key and a fresh runtime key created)",
			"attest: challenge: attempt 1 failed: ",
			// "… exhausted after N attempts", or "… exhausted: no time left
			// for attempt N" when the next backoff would pass the budget.
			"FAILED at attest: getting a challenge: retry budget exhausted",
			"stage times: mount=",
		)
		if !connected {
			t.Error("the guest never connected to the verifier address on the host")
		}
		// The command line tried to widen the configuration; it was ignored.
		mustContain(t, out,
			`level=WARN msg="ignoring kernel command line key: it may not change the agent configuration" key=confidant.verifier.url`,
			`key=confidant.debug_shell`,
			"kernel command line set: confidant.os_disk_uuid confidant.ip confidant.gw)",
		)
		s := summary(t, out)
		if s.Stage != "attest" || !slices.Equal(s.Completed, []string{"mount", "config", "modules", "configfs", "network", "devices"}) ||
			s.DebugShell || s.Action != "poweroff" {
			t.Errorf("summary %+v", s)
		}
	})

	t.Run("OS disk UUID not found", func(t *testing.T) {
		t.Parallel()
		wrong := "99999999-8888-4777-8666-555555555555"
		// The production module list is proven by the other boot; this one
		// loads only what it needs, to keep the test fast under TCG.
		out, connected := boot(t, qemu, g, wrong, []string{"virtio_pci", "virtio_blk", "virtio_net", "virtio_console", "dm_crypt"}, "")
		mustContain(t, out,
			"FAILED at devices: finding OS disk: no block device with LUKS UUID "+wrong+" (seen: vda LUKS "+g.osUUID+", vdb): not found",
		)
		// configfs is a module on this kernel and was left out: only
		// configfs-tsm needs it, so the flow goes on.
		mustContain(t, out, "configfs not available (not needed for tee sim)")
		if strings.Contains(out, "OS disk: /dev/") {
			t.Error("an OS disk was reported found")
		}
		// The verifier is first reached by the attest stage.
		if connected {
			t.Error("the guest connected to the verifier before attesting")
		}
		s := summary(t, out)
		if s.Stage != "devices" || !slices.Equal(s.Completed, []string{"mount", "config", "modules", "configfs", "network"}) {
			t.Errorf("summary %+v", s)
		}
	})
}

// prepareGuest builds the agent and the initramfs, and makes the disks.
func prepareGuest(t *testing.T) *guest {
	t.Helper()
	dir := t.TempDir()
	modulesDir, kernel := cloudKernel(t)

	start := time.Now()
	agent := filepath.Join(dir, "confidant-agent")
	build := exec.Command("go", "build", "-trimpath", "-o", agent, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the agent: %v\n%s", err, out)
	}
	t.Logf("agent built in %v", time.Since(start).Round(time.Millisecond))

	g := &guest{kernel: kernel, modulesDir: modulesDir, agent: agent}
	// A real LUKS2 OS disk (cryptsetup, fast KDF: only the header matters
	// here) and a blank temp disk.
	g.osImage = filepath.Join(dir, "os.img")
	g.tmpImg = filepath.Join(dir, "tmp.img")
	g.osUUID = "3f1c2b6a-1111-4222-8333-444455556666"
	for img, size := range map[string]int64{g.osImage: 20 << 20, g.tmpImg: 8 << 20} {
		if err := os.WriteFile(img, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(img, size); err != nil {
			t.Fatal(err)
		}
	}
	key := filepath.Join(dir, "key")
	writeFile(t, key, rand.Text())
	luks := exec.Command("cryptsetup", "luksFormat", "--type", "luks2", "--batch-mode", "--uuid", g.osUUID,
		"--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000", "--key-file", key, g.osImage)
	if out, err := luks.CombinedOutput(); err != nil {
		t.Fatalf("cryptsetup luksFormat: %v\n%s", err, out)
	}
	return g
}

// cloudKernel returns the first kernel (by version) under /lib/modules that
// has a matching /boot/vmlinuz: the installed linux-image-cloud-amd64.
func cloudKernel(t *testing.T) (modulesDir, kernel string) {
	t.Helper()
	deps, _ := filepath.Glob("/lib/modules/*/modules.dep")
	slices.Sort(deps)
	for _, d := range deps {
		dir := filepath.Dir(d)
		k := "/boot/vmlinuz-" + filepath.Base(dir)
		if _, err := os.Stat(k); err == nil {
			return dir, k
		}
	}
	t.Fatal("no kernel with modules found (apt-get install linux-image-cloud-amd64)")
	return "", ""
}

// boot runs QEMU until the guest powers itself off and returns the serial
// console output and whether the guest connected to the verifier address.
// tpmSocket is a swtpm control socket; "": no TPM.
func boot(t *testing.T, qemu string, g *guest, osUUID string, modules []string, tpmSocket string) (string, bool) {
	t.Helper()
	// QEMU's user network takes the guest's connections to 10.0.2.2 to the
	// host's loopback. The verifier URL is in the configuration (the command
	// line may not set it), so each boot gets an initramfs naming its own
	// listener's port: a connection there comes from this guest.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	initrd := buildInitrd(t, g, ln.Addr().(*net.TCPAddr).Port, modules)
	var connected atomic.Bool
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			connected.Store(true)
			c.Close()
		}
	}()

	ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
	defer cancel()
	cmdline := strings.Join([]string{
		"console=ttyS0", "panic=-1", "loglevel=4",
		"confidant.os_disk_uuid=" + osUUID, "confidant.ip=10.0.2.15/24", "confidant.gw=10.0.2.2",
		// Keys the command line may not set: ignored with a warning.
		"confidant.verifier.url=http://10.0.2.2:1", "confidant.debug_shell=true",
	}, " ")
	args := []string{
		"-accel", "tcg", "-cpu", "max", "-m", "512", "-smp", "1",
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
		"-serial", "stdio",
		"-kernel", g.kernel, "-initrd", initrd, "-append", cmdline,
		// Snapshot mode: the parallel boots share the images read-only.
		"-snapshot",
		"-drive", "file=" + g.osImage + ",if=virtio,format=raw",
		"-drive", "file=" + g.tmpImg + ",if=virtio,format=raw",
		"-netdev", "user,id=n0",
		"-device", "virtio-net-pci,netdev=n0",
		"-device", "virtio-serial-pci",
		"-chardev", "null,id=sp",
		"-device", "virtserialport,chardev=sp,name=confidant.sp",
	}
	if tpmSocket != "" {
		args = append(args,
			"-chardev", "socket,id=chrtpm,path="+tpmSocket,
			"-tpmdev", "emulator,id=tpm0,chardev=chrtpm",
			"-device", "tpm-tis,tpmdev=tpm0")
	}
	cmd := exec.CommandContext(ctx, qemu, args...)
	var out syncBuffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	cmd.WaitDelay = 2 * time.Second
	start := time.Now()
	err = cmd.Run()
	took := time.Since(start).Round(time.Millisecond)
	console := out.String()
	t.Logf("QEMU ran %v; console:\n%s", took, agentLines(console))
	switch {
	case ctx.Err() != nil:
		t.Fatalf("the guest did not power off within %v; console:\n%s", bootTimeout, console)
	case err != nil:
		t.Fatalf("qemu: %v; console:\n%s", err, console)
	}
	// Powered off by the agent: the kernel says so, and nothing panicked.
	mustContain(t, console, "reboot: Power down")
	if strings.Contains(console, "Kernel panic") {
		t.Errorf("kernel panic:\n%s", console)
	}
	if n := strings.Count(console, "confidant-agent: FAILED at "); n != 1 {
		t.Errorf("%d FAILED lines, want 1", n)
	}
	// Give the accept loop a moment for a connection racing the exit.
	time.Sleep(10 * time.Millisecond)
	return console, connected.Load()
}

// startSwtpm runs a swtpm for one boot and returns its control socket. It
// ends when QEMU closes the connection (--terminate) or the test ends.
func startSwtpm(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("swtpm")
	if err != nil {
		t.Fatalf("swtpm is needed (apt-get install swtpm): %v", err)
	}
	// A short path: unix socket paths are limited to 108 bytes.
	dir, err := os.MkdirTemp("", "swtpm-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "ctrl.sock")
	cmd := exec.Command(bin, "socket", "--tpm2", "--tpmstate", "dir="+dir,
		"--ctrl", "type=unixio,path="+sock, "--terminate")
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	for deadline := time.Now().Add(10 * time.Second); ; {
		if _, err := os.Stat(sock); err == nil {
			return sock
		}
		if time.Now().After(deadline) {
			t.Fatalf("swtpm made no control socket in 10s:\n%s", out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// buildInitrd builds an initramfs with our builder: the agent, a
// configuration naming the verifier at 10.0.2.2:port, and the modules
// resolved from the cloud kernel's modules.dep.
func buildInitrd(t *testing.T, g *guest, port int, modules []string) string {
	t.Helper()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "agent.yaml")
	writeFile(t, cfg, fmt.Sprintf(`verifier:
  url: http://10.0.2.2:%d
  allow_plain_http: true
key_name: os-disk
temp_disk:
  device: /dev/vdb
tee: sim
retry_budget: 2s
device_timeout: 3s
on_failure: poweroff
`, port))
	initrd := filepath.Join(dir, "initrd.img")
	f, err := os.Create(initrd)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := initramfs.Build(initramfs.Spec{
		Agent: g.agent, Config: cfg, ModulesDir: g.modulesDir, Modules: modules,
	}, f); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return initrd
}

func mustContain(t *testing.T, out string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(out, w) {
			t.Errorf("console lacks %q", w)
		}
	}
}

type summaryLine struct {
	Stage      string   `json:"failed_stage"`
	Completed  []string `json:"completed"`
	Action     string   `json:"action"`
	DebugShell bool     `json:"debug_shell"`
}

func summary(t *testing.T, out string) summaryLine {
	t.Helper()
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		if _, js, ok := strings.Cut(sc.Text(), "confidant-agent: summary "); ok {
			var s summaryLine
			if err := json.Unmarshal([]byte(strings.TrimSpace(js)), &s); err != nil {
				t.Fatalf("summary %q: %v", js, err)
			}
			return s
		}
	}
	t.Fatal("no summary line")
	return summaryLine{}
}

// agentLines keeps the agent's lines and the kernel's power-off line.
func agentLines(out string) string {
	var b strings.Builder
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "confidant-agent") || strings.Contains(l, "Power down") || strings.Contains(l, "Run /init") {
			b.WriteString(strings.TrimRight(l, "\r") + "\n")
		}
	}
	return b.String()
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// syncBuffer is a bytes.Buffer safe for QEMU's stdout and stderr copiers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
