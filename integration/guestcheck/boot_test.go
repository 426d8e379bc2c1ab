package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/confidant-cvm/confidant/shared/initramfs"
)

// bootTimeout bounds the QEMU run (TCG: about 4 s to /init on an idle
// machine, then encrypting the image and the demo OS a few seconds more).
const bootTimeout = 90 * time.Second

// testInit is /init of the test initramfs. It does what the agent does for
// the OS, with loop devices for disks and fresh random keys: puts the demo
// OS image and a new ext2 temp filesystem on dm-crypt mappings, mounts them,
// moves /proc /sys /dev into the new root, and switch_roots to /sbin/init.
// A linear mapping and a crypt mapping keyed through the kernel keyring show
// up in the dm report too.
const testInit = `#!/bin/sh
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in $(cat /modules); do insmod /lib/modules/$m || echo "initramfs: insmod $m failed"; done
dd if=/dev/zero of=/os.bin bs=1M count=16 2>/dev/null
dd if=/dev/zero of=/temp.bin bs=1M count=24 2>/dev/null
dd if=/dev/zero of=/extra.bin bs=1M count=1 2>/dev/null
losetup /dev/loop0 /os.bin && losetup /dev/loop1 /temp.bin && losetup /dev/loop2 /extra.bin || echo "initramfs: losetup failed"
dmcreate crypt confidant-root CRYPT-LUKS2-3f2a9c1e6d4b4e8a9b1c7a5d2e8f0c13-confidant-root /dev/loop0 32768 $(cat /os.key)
dmcreate crypt confidant-temp CRYPT-LUKS2-5b7e1d2c3a4f4b6e8d9c0a1b2c3d4e5f-confidant-temp /dev/loop1 49152 $(cat /temp.key)
dmcreate linear plain-linear /dev/loop2 8
dmcreate crypt-keyring keyring-crypt CRYPT-PLAIN-keyring-crypt /dev/loop2 2048 $(cat /os.key)
rm /os.key /temp.key
dd if=/rootfs.img of=/dev/dm-0 bs=1M 2>/dev/null || echo "initramfs: writing the OS image failed"
mke2fs -q -b 4096 /dev/dm-1 >/dev/null || echo "initramfs: mke2fs failed"
mount -t ext4 /dev/dm-0 /newroot || echo "initramfs: mounting the OS failed"
mount -t ext2 /dev/dm-1 /newroot/mnt/resource || echo "initramfs: mounting temp failed"
mkdir -p /newroot/run/confidant && cp /token.jwt /newroot/run/confidant/token.jwt
mount --move /proc /newroot/proc
mount --move /sys /newroot/sys
mount --move /dev /newroot/dev
echo "initramfs: switching root"
exec switch_root /newroot /sbin/init
`

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

// bootImage boots the demo OS image on real dm-crypt mappings and checks
// guestcheck's report from the serial console.
func bootImage(t *testing.T, img string) {
	needTools(t, "qemu-system-x86_64")
	modulesDir, kernel := cloudKernel(t)
	dir := t.TempDir()

	dmcreate := filepath.Join(dir, "dmcreate")
	build := exec.Command("go", "build", "-trimpath", "-o", dmcreate, "./internal/dmcreate")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building dmcreate: %v\n%s", err, out)
	}

	osKey, tempKey := randomHex(t, 64), randomHex(t, 64)
	var a initramfs.Archive
	add := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	add(a.AddFile("/init", []byte(testInit), 0o755))
	add(a.AddFile("/bin/busybox", readFile(t, "/bin/busybox"), 0o755))
	for _, applet := range []string{"sh", "mount", "cat", "insmod", "dd", "losetup", "rm", "mke2fs", "mkdir", "cp", "echo", "switch_root"} {
		add(a.AddSymlink("/bin/"+applet, "busybox"))
	}
	add(a.AddFile("/bin/dmcreate", readFile(t, dmcreate), 0o755))
	// Loop devices stand in for the guest's disks; dm-crypt needs xts and
	// ecb for aes-xts.
	mods, err := initramfs.ResolveModules(os.DirFS(modulesDir), []string{"loop", "dm_mod", "dm_crypt", "ecb", "xts"})
	if err != nil {
		t.Fatalf("resolving modules: %v", err)
	}
	var order []string
	for _, m := range mods.Load {
		if !strings.HasSuffix(m.Path, ".ko") {
			t.Fatalf("module %s is compressed; busybox insmod wants plain .ko", m.Path)
		}
		add(a.AddFile("/lib/modules/"+filepath.Base(m.Path), readFile(t, filepath.Join(modulesDir, m.Path)), 0o644))
		order = append(order, filepath.Base(m.Path))
	}
	add(a.AddFile("/modules", []byte(strings.Join(order, " ")+"\n"), 0o644))
	add(a.AddFile("/os.key", []byte(osKey), 0o600))
	add(a.AddFile("/temp.key", []byte(tempKey), 0o600))
	add(a.AddFile("/token.jwt", []byte(jws(sampleClaims)), 0o600))
	add(a.AddFile("/rootfs.img", readFile(t, img), 0o600))
	for _, d := range []string{"/proc", "/sys", "/dev", "/newroot"} {
		add(a.AddDir(d, 0o755))
	}
	initrd := filepath.Join(dir, "initrd.gz")
	f, err := os.Create(initrd)
	if err != nil {
		t.Fatal(err)
	}
	add(a.WriteGzip(f))
	add(f.Close())

	ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
	defer cancel()
	var serial bytes.Buffer
	qemu := exec.CommandContext(ctx, "qemu-system-x86_64",
		"-accel", "tcg", "-cpu", "max", "-m", "512", "-smp", "1",
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
		"-serial", "stdio",
		"-kernel", kernel, "-initrd", initrd,
		"-append", "console=ttyS0 panic=-1 loglevel=4")
	qemu.Stdout, qemu.Stderr = &serial, &serial
	err = qemu.Run()
	log := strings.ReplaceAll(serial.String(), "\r", "")
	if ctx.Err() != nil {
		t.Fatalf("guest did not power off within %v:\n%s", bootTimeout, log)
	}
	if err != nil {
		t.Fatalf("qemu: %v\n%s", err, log)
	}

	for _, key := range []string{osKey, tempKey, "confidant-test:keyring-crypt"} {
		if strings.Contains(strings.ToLower(log), key) {
			t.Fatalf("serial log shows key material %q:\n%s", key, log)
		}
	}
	reports := map[string]json.RawMessage{}
	var order2 []string
	sc := bufio.NewScanner(strings.NewReader(log))
	sc.Buffer(nil, 1<<20)
	marker := -1
	for sc.Scan() {
		line := sc.Text()
		if strings.Contains(line, "confidant-demo: OS init reached, powering off") {
			marker = len(order2)
		}
		_, js, ok := strings.Cut(line, linePrefix)
		if !ok {
			continue
		}
		var head struct{ Check string }
		if err := json.Unmarshal([]byte(js), &head); err != nil {
			t.Fatalf("guestcheck line is not JSON: %q: %v", js, err)
		}
		reports[head.Check] = json.RawMessage(js)
		order2 = append(order2, head.Check)
	}
	if strings.Join(order2, ",") != "root,temp,dm,token,eventlog,summary" || marker != len(order2) {
		t.Fatalf("guestcheck reports %v, final marker after %d of them:\n%s", order2, marker, log)
	}

	var sum summaryReport
	mustUnmarshal(t, reports["summary"], &sum)
	if !sum.OK || len(sum.Problems) != 0 {
		t.Errorf("summary: %+v\n%s", sum, log)
	}
	var root, temp mountReport
	mustUnmarshal(t, reports["root"], &root)
	mustUnmarshal(t, reports["temp"], &temp)
	if !root.DMCrypt || root.DM == nil || root.DM.Name != "confidant-root" || root.FSType != "ext4" ||
		root.DM.Cipher != "aes-xts-plain64" || root.DM.KeyBytes != 64 || root.DM.SectorSize != 4096 ||
		!slices.Equal(root.DM.Slaves, []string{"loop0"}) {
		t.Errorf("root report: %s", reports["root"])
	}
	if !temp.DMCrypt || temp.DM == nil || temp.DM.Name != "confidant-temp" || temp.Probe != "ok" ||
		temp.ReadOnly || temp.DeviceBytes != 24<<20 || temp.SizeBytes == 0 {
		t.Errorf("temp report: %s", reports["temp"])
	}
	var dm dmReport
	mustUnmarshal(t, reports["dm"], &dm)
	byName := map[string]dmDevice{}
	for _, d := range dm.Devices {
		byName[d.Name] = d
	}
	want := map[string]struct{ kind, params string }{
		"confidant-root": {"hex", "aes-xts-plain64 <redacted> 0 7:0 0 1 sector_size:4096"},
		"confidant-temp": {"hex", "aes-xts-plain64 <redacted> 0 7:1 0 1 sector_size:4096"},
		"plain-linear":   {"", "7:2 0"},
		"keyring-crypt":  {"keyring", "aes-xts-plain64 <redacted> 0 7:2 0 1 sector_size:4096"},
	}
	for name, w := range want {
		d, ok := byName[name]
		if !ok || len(d.Targets) != 1 || d.Targets[0].KeyKind != w.kind || d.Targets[0].Params != w.params {
			t.Errorf("dm device %s: %+v, want key kind %q params %q", name, d, w.kind, w.params)
		}
	}
	var tok tokenReport
	mustUnmarshal(t, reports["token"], &tok)
	if !tok.Present || tok.Claims == nil || tok.Claims.Status != "affirming" || tok.Claims.Sub != "guest-1" {
		t.Errorf("token report: %s", reports["token"])
	}
}

func randomHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustUnmarshal(t *testing.T, b []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("decoding %s: %v", b, err)
	}
}
