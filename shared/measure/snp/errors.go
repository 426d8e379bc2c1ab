package snp

import "errors"

// Sentinel errors. Callers branch on them with errors.Is; the returned errors
// wrap them with the detail.
var (
	// ErrFirmwareSize: the firmware image is empty, not a whole number of
	// 4 KiB pages, or too large to sit below 4 GiB.
	ErrFirmwareSize = errors.New("firmware image size is not usable")
	// ErrMalformedFirmware: the OVMF GUID table or SEV metadata is
	// inconsistent (out-of-range offsets or sizes, duplicate entries,
	// unaligned sections).
	ErrMalformedFirmware = errors.New("malformed firmware tables")
	// ErrNoSEVMetadata: the firmware has no OVMF SEV metadata (no GUID
	// table, no metadata entry, or no sections), so it cannot be launched
	// as an SNP guest.
	ErrNoSEVMetadata = errors.New("firmware has no SEV metadata")
	// ErrNoResetVector: the firmware has no usable SEV-ES reset block,
	// which gives the application processors' start address.
	ErrNoResetVector = errors.New("firmware has no SEV-ES reset vector")
	// ErrNoKernelHashes: a kernel is to be measured but the firmware has no
	// SNP_KERNEL_HASHES section or no valid SEV hash table address.
	ErrNoKernelHashes = errors.New("firmware does not support measured direct boot")
	// ErrUnknownSection: the SEV metadata names a section type this package
	// does not know how to measure.
	ErrUnknownSection = errors.New("unknown SEV metadata section type")
	// ErrUnknownVCPUType: the vCPU model name is not in the table.
	ErrUnknownVCPUType = errors.New("unknown vCPU type")
	// ErrUnknownVMM: the VMM type is neither QEMU nor EC2 (or, for the
	// simulation, not QEMU).
	ErrUnknownVMM = errors.New("unknown VMM type")
	// ErrInvalidVCPUs: the vCPU count is below 1 or above MaxVCPUs.
	ErrInvalidVCPUs = errors.New("invalid vCPU count")
	// ErrKernelRequired: an initrd or a command line was given without a
	// kernel; it would not be measured.
	ErrKernelRequired = errors.New("initrd or command line given without a kernel")
)
