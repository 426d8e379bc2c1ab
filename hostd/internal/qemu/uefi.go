package qemu

import (
	"errors"
	"fmt"
)

// ESPSerial is the serial of the read-only ESP disk of UEFI guests
// (/sys/block/vd*/serial), so the guest can tell it from its own disks.
const ESPSerial = "confidant-esp"

// checkUEFI lists what is wrong with a UEFI (sim + OVMF) configuration.
// Direct kernel boot is refused outright: with -kernel, OVMF's legacy Linux
// loader starts an unsigned kernel with Secure Boot reported on.
func (c Config) checkUEFI() []error {
	var errs []error
	bad := func(f string, a ...any) { errs = append(errs, fmt.Errorf(f, a...)) }
	if c.TEE != TEESim {
		bad("UEFI boot from an ESP is only wired for sim guests")
	}
	if c.Firmware == "" || c.UEFIVars == "" || c.ESP == "" {
		bad("UEFI guests need the OVMF code image, their variable store and the ESP")
	}
	if c.Kernel != "" || c.Initrd != "" || c.Append != "" {
		errs = append(errs, errors.New("UEFI guests boot the signed UKI on the ESP: -kernel, -initrd and -append would bypass Secure Boot"))
	}
	return errs
}

// simUEFIArgs: a sim guest booting Debian's OVMF SMM build with Secure
// Boot enforced (QEMU 7.2, OVMF edk2-stable202211 here), the signed UKI
// on the ESP. Seen booting and refusing unsigned UKIs (shared/FACTS.md).
//
//   - -machine q35,smm=on,accel=tcg: the Secure Boot build keeps its
//     variables behind SMM (OvmfPkg/README "SMM"; docs/system/i386/
//     q35.rst); without smm=on it prints nothing and hangs.
//   - -global driver=cfi.pflash01,property=secure,value=on: only SMM code
//     may write the flash (hw/block/pflash_cfi01.c "secure"; OvmfPkg/README).
//   - -global ICH9-LPC.disable_s3=1: S3 resume is not supported with SMM
//     (OvmfPkg/README "S3").
//   - -drive if=pflash,format=raw,unit=0,file=CODE,readonly=on and
//     unit=1,file=VARS: split code and variable store (qemu-options.hx
//     "-drive if=pflash"; OvmfPkg/README "-drive if=pflash"). CODE is
//     hostd's copy of the measured bytes; VARS is the guest's own store.
//   - the ESP: -drive if=none,readonly=on + -device virtio-blk-pci with
//     serial=confidant-esp and bootindex=1 (qemu-options.hx "-drive"
//     readonly; docs/system/bootindex.rst: OVMF orders its boot options
//     by the fw_cfg bootorder), after the OS and temp disks.
//   - no -kernel/-initrd/-append: OVMF loads \EFI\BOOT\BOOTX64.EFI and
//     verifies it against db (UEFI 2.9 §32.5).
//   - the rest as simArgs (-cpu, disks, network, vTPM, secure processor).
func simUEFIArgs(c Config) []string {
	a := common(c)
	a = append(a,
		"-machine", "q35,smm=on,accel=tcg",
		"-global", "driver=cfi.pflash01,property=secure,value=on",
		"-global", "ICH9-LPC.disable_s3=1",
		"-cpu", c.CPU,
		"-drive", "if=pflash,format=raw,unit=0,file="+esc(c.Firmware)+",readonly=on",
		"-drive", "if=pflash,format=raw,unit=1,file="+esc(c.UEFIVars),
	)
	for _, f := range c.AddFDs {
		a = append(a, "-add-fd", fmt.Sprintf("fd=%d,set=%d,opaque=%s", f.FD, f.Set, f.Opaque))
	}
	rest := c
	rest.AddFDs = nil // emitted above, before the ESP that may use them
	a = append(a, devices(rest, false)...)
	// The ESP comes after the OS and temp disks, so that they keep the
	// device names they have under SeaBIOS (vda, vdb): the agent names the
	// temp disk by its node.
	a = append(a,
		"-drive", "file="+esc(c.ESP)+",if=none,id=esp,format=raw,readonly=on",
		"-device", "virtio-blk-pci,drive=esp,serial="+ESPSerial+",bootindex=1",
	)
	return append(a, simSP(c)...)
}
