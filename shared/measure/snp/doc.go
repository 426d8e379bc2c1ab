// Package snp computes AMD SEV-SNP launch digests: the MEASUREMENT field of
// an SNP attestation report, as the AMD secure processor accumulates it while
// the hypervisor adds the guest's initial pages with SNP_LAUNCH_UPDATE.
//
// Two definitions live here.
//
// SNPLaunchDigest is the hardware one, for QEMU (or EC2) booting an OVMF
// build with SEV metadata and, for measured direct boot, kernel-hashes=on.
// It follows what the sev-snp-measure tool (virtee/sev-snp-measure) computes
// and is checked against that tool's own published test vectors (see
// testdata/README.md). The chain is
//
//  1. every page of the firmware image as a NORMAL page, the image ending at
//     4 GiB;
//  2. every section of the firmware's SEV metadata, in table order:
//     SNP_SEC_MEM and SVSM_CAA as ZERO pages, SNP_SECRETS as a SECRETS page,
//     CPUID as a CPUID page (after all other sections for EC2), and
//     SNP_KERNEL_HASHES (one page) as a NORMAL page holding QEMU's SEV hash
//     table (the SHA-256 of the command line with its trailing NUL, of the
//     initrd and of the kernel) at the page offset of the firmware's hash
//     table address, or as a ZERO page when no kernel is measured;
//  3. one VMSA page per vCPU: the bootstrap processor starting at the reset
//     vector 0xfffffff0, every application processor at the firmware's
//     SEV-ES reset EIP, each with the vCPU model's CPUID signature in RDX and
//     the guest's SEV features.
//
// Each step extends GCTX.LD: LD = SHA-384(PAGE_INFO), where PAGE_INFO is the
// 0x70-byte structure of the SNP firmware ABI (previous LD, contents digest,
// length, page type, IMI flag, VMPL permissions, GPA).
//
// SimLaunchDigest is the simulated TEE's definition, used where the guest
// boots under plain QEMU with a firmware that has no SEV metadata (SeaBIOS).
// It is not something AMD hardware ever produces. See its doc comment.
package snp
