package snp

import "fmt"

// cpuSig computes the CPUID Fn0000_0001_EAX signature (AMD CPUID
// specification #25481) of a family, model and stepping; the hypervisor puts
// it in RDX of every initial VMSA.
func cpuSig(family, model, stepping uint32) uint32 {
	famLow, famHigh := family, uint32(0)
	if family > 0xf {
		famLow, famHigh = 0xf, (family-0xf)&0xff
	}
	return famHigh<<20 | (model>>4&0xf)<<16 | famLow<<8 | (model&0xf)<<4 | stepping&0xf
}

// VCPUSignature returns the CPUID signature of a QEMU CPU model name. The
// table is sev-snp-measure's (QEMU's builtin_x86_defs), extended with the
// later QEMU versions of the same models, which keep family, model and
// stepping, and with EPYC-Turin (family 26, model 0, stepping 0).
func VCPUSignature(name string) (uint32, error) {
	switch name {
	case "EPYC", "EPYC-v1", "EPYC-v2", "EPYC-IBPB", "EPYC-v3", "EPYC-v4", "EPYC-v5":
		return cpuSig(23, 1, 2), nil
	case "EPYC-Rome", "EPYC-Rome-v1", "EPYC-Rome-v2", "EPYC-Rome-v3", "EPYC-Rome-v4", "EPYC-Rome-v5":
		return cpuSig(23, 49, 0), nil
	case "EPYC-Milan", "EPYC-Milan-v1", "EPYC-Milan-v2", "EPYC-Milan-v3":
		return cpuSig(25, 1, 1), nil
	case "EPYC-Genoa", "EPYC-Genoa-v1", "EPYC-Genoa-v2":
		return cpuSig(25, 17, 0), nil
	case "EPYC-Turin", "EPYC-Turin-v1":
		return cpuSig(26, 0, 0), nil
	}
	return 0, fmt.Errorf("vCPU type %q: %w", name, ErrUnknownVCPUType)
}
