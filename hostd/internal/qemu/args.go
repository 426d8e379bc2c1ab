// Package qemu builds QEMU command lines for the three guest kinds (sev-snp,
// tdx, sim), talks QMP to a running QEMU, and reads QEMU's version.
//
// Every argument names the upstream QEMU release and document it follows;
// hostd/README.md has the same table. QEMU 7.2 is what Debian 12 ships and
// what the sim path runs on here; SEV-SNP needs QEMU ≥ 9.1, TDX ≥ 10.1.
package qemu

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// TEE kinds, as in the guest spec.
const (
	TEESNP = "sev-snp"
	TEETDX = "tdx"
	TEESim = "sim"
)

// GuestForwardIP is the address inside the guest's user network at which
// the verifier is forwarded (slirp's 10.0.2.0/24 network).
const GuestForwardIP = "10.0.2.100"

// SPPortName is the virtio-serial port name of the simulated secure
// processor (shared/simsp.PortName).
const SPPortName = "confidant.sp"

// Disk serials the guest finds its disks by (/sys/block/vd*/serial).
const (
	OSDiskSerial   = "confidant-os"
	TempDiskSerial = "confidant-temp"
)

// ErrConfig means a Config cannot be turned into a command line.
var ErrConfig = errors.New("invalid QEMU configuration")

// Config is one guest launch, with every path already resolved.
type Config struct {
	Name      string
	TEE       string // TEESNP, TEETDX or TEESim
	VCPUs     int
	MemoryMiB int64
	CPU       string // -cpu model

	// Firmware: a SeaBIOS or OVMF image for -bios, or (IGVM true) an IGVM
	// file for the igvm-cfg object, or (UEFI true) the OVMF code image for
	// pflash unit 0.
	Firmware string
	IGVM     bool

	// UEFI (sim only): boot OVMF with Secure Boot from pflash, the UKI on
	// the ESP; no -kernel, -initrd or -append (see uefi.go).
	UEFI bool
	// ESP is the EFI system partition image, attached read-only
	// ("/dev/fdset/N" for one passed in AddFDs). UEFI only.
	ESP string
	// UEFIVars is the guest's own variable store, pflash unit 1. UEFI only.
	UEFIVars string

	Kernel, Initrd, Append string

	OSDisk   string // optional; "/dev/fdset/N" for one passed in AddFDs
	TempDisk string // optional

	// AddFDs are file descriptors QEMU inherits and files into fd sets, so
	// that a path "/dev/fdset/N" opens them instead of a file by name.
	AddFDs []AddFD

	QMPSocket string // QMP control socket (server)
	SerialLog string // serial console, appended
	SPSocket  string // sim: simulated secure processor socket (server)

	// VerifierHost and VerifierPort: the only host service the guest can
	// reach, at GuestForwardIP:VerifierPort.
	VerifierHost string
	VerifierPort int
	// Relay is the absolute path of the confidant-hostd executable that
	// sim guests' user networking runs once per guest connection to the
	// verifier (`relay --to VerifierHost:VerifierPort`). Required for sim
	// guests; sev-snp and tdx guests use a TCP chardev instead.
	Relay string

	// TPMSocket is the swtpm control socket; empty: no swtpm.
	TPMSocket string
	// TPMDevice is "tpm-crb" or "tpm-tis".
	TPMDevice string

	SNP SNPConfig
	TDX TDXConfig
}

// SNPConfig holds the sev-snp-guest object's properties.
type SNPConfig struct {
	Policy          uint64
	CBitPos         int
	ReducedPhysBits int
	HostData        [32]byte // zero: left out
}

// TDXConfig holds the tdx-guest object's properties.
type TDXConfig struct {
	QGSSocket  string
	MRConfigID [48]byte // zero: left out
}

// AddFD is one -add-fd option (qemu-options.hx "-add-fd", QEMU ≥ 1.x): QEMU
// adds inherited descriptor FD to fd set Set; Opaque is a free-form note
// shown by query-fdsets.
type AddFD struct {
	FD     int
	Set    int
	Opaque string
}

// Args returns QEMU's arguments (without the program name) for c.
func Args(c Config) ([]string, error) {
	if err := c.check(); err != nil {
		return nil, err
	}
	switch c.TEE {
	case TEESNP:
		return snpArgs(c), nil
	case TEETDX:
		return tdxArgs(c), nil
	case TEESim:
		if c.UEFI {
			return simUEFIArgs(c), nil
		}
		return simArgs(c), nil
	}
	return nil, fmt.Errorf("%w: unknown TEE %q", ErrConfig, c.TEE)
}

func (c Config) check() error {
	var errs []error
	bad := func(f string, a ...any) { errs = append(errs, fmt.Errorf(f, a...)) }
	if c.Name == "" || strings.ContainsAny(c.Name, ",= ") {
		bad("name %q", c.Name)
	}
	if c.VCPUs < 1 {
		bad("vcpus %d", c.VCPUs)
	}
	if c.MemoryMiB < 1 {
		bad("memory %d MiB", c.MemoryMiB)
	}
	if c.UEFI {
		errs = append(errs, c.checkUEFI()...)
	} else if c.Kernel == "" || c.Initrd == "" || c.Firmware == "" {
		bad("kernel, initrd and firmware are required")
	} else if c.ESP != "" || c.UEFIVars != "" {
		bad("an ESP and a variable store are only for UEFI guests")
	}
	if c.QMPSocket == "" || c.SerialLog == "" {
		bad("QMP socket and serial log are required")
	}
	if c.TEE == TEESim && c.SPSocket == "" {
		bad("sim guests need the secure processor socket")
	}
	if c.TEE == TEESim && (!strings.HasPrefix(c.Relay, "/") || strings.ContainsFunc(c.Relay, badRelayRune)) {
		bad("relay program %q: want an absolute path without quotes, backslashes or control characters", c.Relay)
	}
	if c.VerifierHost == "" || strings.ContainsAny(c.VerifierHost, ",:- ") || c.VerifierPort < 1 || c.VerifierPort > 65535 {
		bad("verifier %q port %d", c.VerifierHost, c.VerifierPort)
	}
	if c.TPMSocket != "" && c.TPMDevice != "tpm-crb" && c.TPMDevice != "tpm-tis" {
		bad("tpm device %q", c.TPMDevice)
	}
	if c.CPU == "" || strings.ContainsAny(c.CPU, ", ") {
		bad("cpu %q", c.CPU)
	}
	if strings.ContainsAny(c.Append, "\n\x00") {
		bad("command line holds a newline or NUL")
	}
	if c.TEE == TEETDX && c.TDX.QGSSocket == "" {
		bad("tdx guests need the QGS socket")
	}
	if c.IGVM && c.TEE != TEESNP {
		bad("IGVM firmware is only wired for sev-snp")
	}
	for _, f := range c.AddFDs {
		if f.FD < 3 || f.Set < 0 || strings.ContainsAny(f.Opaque, ",= \n\x00") {
			bad("add-fd fd %d set %d opaque %q", f.FD, f.Set, f.Opaque)
		}
	}
	if c.TEE != TEETDX && c.TDX.MRConfigID != ([48]byte{}) {
		bad("MRCONFIGID is only for tdx guests")
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %w", ErrConfig, errors.Join(errs...))
	}
	return nil
}

// badRelayRune reports the characters the relay path may not hold: it is
// single-quoted for GLib's g_shell_parse_argv, which slirp uses to split
// the cmd: line.
func badRelayRune(r rune) bool { return r == '\'' || r == '\\' || r < 0x20 || r == 0x7f }

// esc escapes a value for QEMU's option syntax (a comma is written twice;
// docs/system/invocation: "to include a comma in a value, double it").
func esc(s string) string { return strings.ReplaceAll(s, ",", ",,") }

// common returns the arguments every guest gets, in a fixed order.
//
//   - -name guest=N,debug-threads=on: QEMU ≥ 2.x, qemu-options.hx "-name".
//   - -nodefaults -no-user-config: no implicit devices or config files
//     (qemu-options.hx); only what is listed here exists in the guest.
//   - -display none: headless (qemu-options.hx "-display").
//   - -smp / -m: qemu-options.hx.
//   - -chardev socket,...,server=on,wait=off + -mon chardev=...,mode=control:
//     QMP on a unix socket (docs/interop/qmp-intro.rst; server=on/wait=off
//     spelling since QEMU 6.0).
//   - -chardev file,...,append=on + -serial chardev:...: serial console to a
//     log file that survives restarts (qemu-options.hx "-chardev file").
//   - -sandbox on,...: seccomp filter (qemu-options.hx "-sandbox", QEMU ≥ 2.11
//     for the deny options). sim guests leave out spawn=deny and
//     elevateprivileges=deny: slirp forks, calls setsid and execs the relay
//     for each guest connection (see devices), and with either option QEMU
//     7.2's filter kills QEMU (fork) or the child (setsid).
func common(c Config) []string {
	sandbox := "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"
	if c.TEE == TEESim {
		sandbox = "on,obsolete=deny,resourcecontrol=deny"
	}
	return []string{
		"-name", "guest=" + c.Name + ",debug-threads=on",
		"-nodefaults", "-no-user-config",
		"-display", "none",
		"-smp", strconv.Itoa(c.VCPUs),
		"-m", strconv.FormatInt(c.MemoryMiB, 10) + "M",
		"-chardev", "socket,id=qmp,path=" + esc(c.QMPSocket) + ",server=on,wait=off",
		"-mon", "chardev=qmp,mode=control",
		"-chardev", "file,id=console,path=" + esc(c.SerialLog) + ",append=on",
		"-serial", "chardev:console",
		"-sandbox", sandbox,
	}
}

// boot returns the direct kernel boot arguments (qemu-options.hx "-kernel",
// "-initrd", "-append"; docs/system/linuxboot.rst).
func boot(c Config) []string {
	return []string{"-kernel", c.Kernel, "-initrd", c.Initrd, "-append", c.Append}
}

// devices returns disks, network and TPM. confidential is true for SNP and
// TDX guests, whose virtio devices must use the DMA API through bounce
// buffers: iommu_platform=on offers VIRTIO_F_ACCESS_PLATFORM (QEMU
// docs/system/i386/amd-memory-encryption.rst and tdx.rst), disable-legacy=on
// keeps them virtio 1.0 only, and romfile= loads no option ROM into the
// measured firmware path.
//
//   - -add-fd fd=N,set=S,opaque=..: qemu-options.hx "-add-fd"; hostd opens
//     the OS disk itself (after checking where it resolves) and passes it
//     as an inherited descriptor, and -drive file=/dev/fdset/S opens that
//     (QEMU picks the descriptor whose access mode matches, so one
//     read-write and one read-only descriptor of the same file are passed).
//   - -drive if=none,format=raw + -device virtio-blk-pci,serial=...:
//     qemu-options.hx "-drive", docs/system/devices/virtio-blk (serial is
//     visible in /sys/block/vd*/serial; at most 20 bytes).
//   - -netdev user,restrict=on,guestfwd=tcp:IP:PORT-...: docs/system/
//     devices/net.rst "user" and qemu-options.hx "-netdev user" guestfwd
//     (restrict=on since QEMU 2.x): the guest can reach nothing but the one
//     forwarded service.
//     sim guests: "cmd:'RELAY' relay --to HOST:PORT" (qemu-options.hx
//     "guestfwd=[tcp]:server:port-cmd:command"): slirp runs the command for
//     each guest connection, with the connection on its stdin and stdout
//     (libslirp fork_exec; the line is split by GLib's g_shell_parse_argv,
//     hence the single quotes), so every guest connection gets its own TCP
//     connection to the verifier, opened when the guest connects. Seen
//     working on QEMU 7.2 with libslirp 4.7.
//     sev-snp and tdx guests (whose QEMU keeps spawn=deny): a TCP client
//     chardev ("tcp:HOST:PORT", its comma doubled inside the netdev option)
//     with reconnect=1 (qemu-options.hx "-chardev socket" reconnect): slirp
//     sends every guest connection into that one stream, opened when QEMU
//     starts, so the guest must use one connection at a time and its first
//     bytes can be lost when the verifier has closed the idle stream.
//   - -chardev socket + -tpmdev emulator + -device tpm-crb|tpm-tis:
//     docs/specs/tpm.rst "The QEMU TPM emulator device" (QEMU ≥ 2.11).
func devices(c Config, confidential bool) []string {
	vopt := ""
	if confidential {
		vopt = ",disable-legacy=on,iommu_platform=on"
	}
	var a []string
	for _, f := range c.AddFDs {
		a = append(a, "-add-fd", fmt.Sprintf("fd=%d,set=%d,opaque=%s", f.FD, f.Set, f.Opaque))
	}
	if c.OSDisk != "" {
		a = append(a,
			"-drive", "file="+esc(c.OSDisk)+",if=none,id=osdisk,format=raw,discard=unmap",
			"-device", "virtio-blk-pci,drive=osdisk,serial="+OSDiskSerial+vopt)
	}
	if c.TempDisk != "" {
		a = append(a,
			"-drive", "file="+esc(c.TempDisk)+",if=none,id=tempdisk,format=raw,discard=unmap",
			"-device", "virtio-blk-pci,drive=tempdisk,serial="+TempDiskSerial+vopt)
	}
	port := strconv.Itoa(c.VerifierPort)
	target := "tcp:" + c.VerifierHost + ":" + port + ",,reconnect=1"
	if c.TEE == TEESim {
		target = esc("cmd:'" + c.Relay + "' relay --to " + c.VerifierHost + ":" + port)
	}
	a = append(a,
		"-netdev", "user,id=net0,restrict=on,guestfwd=tcp:"+GuestForwardIP+":"+port+"-"+target,
		"-device", "virtio-net-pci,netdev=net0,romfile="+vopt)
	if c.TPMSocket != "" {
		a = append(a,
			"-chardev", "socket,id=chrtpm,path="+esc(c.TPMSocket),
			"-tpmdev", "emulator,id=tpm0,chardev=chrtpm",
			"-device", c.TPMDevice+",tpmdev=tpm0")
	}
	return a
}

// simArgs: any QEMU (7.2 here), TCG, SeaBIOS direct kernel boot.
//
//   - -machine q35 -accel tcg: docs/system/target-i386.rst; TCG because
//     KVM is unavailable here (qemu-options.hx "-accel").
//   - -cpu max: all features TCG can emulate (AES-NI for dm-crypt);
//     docs/system/i386/cpu.rst.
//   - -bios: SeaBIOS image, measured by hostd (qemu-options.hx "-bios").
//   - -device virtio-serial-pci + -chardev socket,server=on,wait=off +
//     -device virtserialport,name=confidant.sp: docs/system/devices/
//     virtio-serial (qemu-options.hx "-chardev socket"); the simulated
//     secure processor.
//   - -no-reboot: a guest reboot ends QEMU, so hostd relaunches and
//     re-measures (qemu-options.hx "-no-reboot").
func simArgs(c Config) []string {
	a := common(c)
	a = append(a,
		"-machine", "q35",
		"-accel", "tcg",
		"-cpu", c.CPU,
		"-bios", c.Firmware,
	)
	a = append(a, boot(c)...)
	a = append(a, devices(c, false)...)
	return append(a, simSP(c)...)
}

// simSP returns the simulated secure processor's virtio-serial port and
// -no-reboot, the tail of every sim guest's arguments.
func simSP(c Config) []string {
	return []string{
		"-device", "virtio-serial-pci,id=vser0",
		"-chardev", "socket,id=sp,path=" + esc(c.SPSocket) + ",server=on,wait=off",
		"-device", "virtserialport,bus=vser0.0,chardev=sp,name=" + SPPortName,
		"-no-reboot",
	}
}

// snpArgs: QEMU ≥ 9.1 (SEV-SNP guest support merged in 9.1.0),
// docs/system/i386/amd-memory-encryption.rst "Launching (SEV-SNP)".
//
//   - -machine q35,confidential-guest-support=sev0,memory-backend=ram1:
//     the SNP guest object and private memory (9.1).
//   - -object memory-backend-memfd,id=ram1,size=..,share=true,prealloc=false:
//     as in the upstream example (qemu-options.hx "memory-backend-memfd").
//   - -object sev-snp-guest,id=sev0,policy=..,cbitpos=..,reduced-phys-bits=..,
//     kernel-hashes=on[,host-data=..]: qapi/qom.json SevSnpGuestProperties
//     (9.1): kernel-hashes=on puts the SHA-256 of kernel, initrd and command
//     line into the OVMF hash table, so they are in the launch digest;
//     host-data (base64 of 32 bytes) is the report's HOST_DATA, the guest's
//     identity.
//   - -bios OVMF.fd: an OVMF AmdSev build (OvmfPkg/AmdSev/AmdSevX64.dsc),
//     the only one with the SNP_KERNEL_HASHES section.
//   - IGVM (COCONUT-SVSM vTPM): -object igvm-cfg,id=igvm0,file=.. and
//     -machine ...,igvm-cfg=igvm0 instead of -bios: docs/system/igvm.rst
//     (QEMU ≥ 10.0). The vTPM then lives in the SVSM at VMPL0; no swtpm.
//   - -accel kvm: SNP needs KVM (KVM_X86_SNP_VM).
func snpArgs(c Config) []string {
	a := common(c)
	machine := "q35,confidential-guest-support=sev0,memory-backend=ram1"
	if c.IGVM {
		machine += ",igvm-cfg=igvm0"
	}
	snp := fmt.Sprintf("sev-snp-guest,id=sev0,policy=%#x,cbitpos=%d,reduced-phys-bits=%d,kernel-hashes=on",
		c.SNP.Policy, c.SNP.CBitPos, c.SNP.ReducedPhysBits)
	if c.SNP.HostData != ([32]byte{}) {
		snp += ",host-data=" + base64.StdEncoding.EncodeToString(c.SNP.HostData[:])
	}
	a = append(a,
		"-machine", machine,
		"-accel", "kvm",
		"-cpu", c.CPU,
		"-object", fmt.Sprintf("memory-backend-memfd,id=ram1,size=%dM,share=true,prealloc=false", c.MemoryMiB),
		"-object", snp,
	)
	if c.IGVM {
		a = append(a, "-object", "igvm-cfg,id=igvm0,file="+esc(c.Firmware))
	} else {
		a = append(a, "-bios", c.Firmware)
	}
	a = append(a, boot(c)...)
	a = append(a, devices(c, true)...)
	return append(a, "-no-reboot")
}

// tdxArgs: QEMU ≥ 10.1 (TDX guest support merged in 10.1.0),
// docs/system/i386/tdx.rst.
//
//   - -object '{"qom-type":"tdx-guest","id":"tdx0",
//     "quote-generation-socket":{"type":"unix","path":".."}}': the TD
//     object; the QGS address is a SocketAddress, so JSON syntax is needed
//     (qapi/qom.json TdxGuestProperties). Debug stays off (attributes
//     default), sept-ve-disable defaults to on. "mrconfigid" (base64 of 48
//     bytes, TdxGuestProperties, 10.1) carries the guest's identity into
//     the TD report's MRCONFIGID.
//   - -machine q35,kernel-irqchip=split,confidential-guest-support=tdx0: a
//     TD requires the split IRQ chip (tdx.rst).
//   - -bios OVMF.fd: an OVMF IntelTdx build; kernel, initrd and command line
//     are measured by TDVF into RTMRs (tdx.rst "Launching a TD").
//   - -accel kvm: TDX needs KVM.
func tdxArgs(c Config) []string {
	props := map[string]any{
		"qom-type": "tdx-guest",
		"id":       "tdx0",
		"quote-generation-socket": map[string]string{
			"type": "unix",
			"path": c.TDX.QGSSocket,
		},
	}
	if c.TDX.MRConfigID != ([48]byte{}) {
		props["mrconfigid"] = base64.StdEncoding.EncodeToString(c.TDX.MRConfigID[:])
	}
	obj, _ := json.Marshal(props)
	a := common(c)
	a = append(a,
		"-machine", "q35,kernel-irqchip=split,confidential-guest-support=tdx0",
		"-accel", "kvm",
		"-cpu", c.CPU,
		"-object", string(obj),
		"-bios", c.Firmware,
	)
	a = append(a, boot(c)...)
	a = append(a, devices(c, true)...)
	return append(a, "-no-reboot")
}
