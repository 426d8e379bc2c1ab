// Package uefi predicts what a UEFI Secure Boot boot of a Unified Kernel
// Image measures, and prepares the variable store that boot runs with.
// It is pure Go, runs nothing, and every parser returns errors (wrapping
// ErrMalformed) on hostile input instead of panicking.
//
//   - GUIDs in EFI byte order; EFI_SIGNATURE_LISTs (UEFI 2.10 §32.4.1),
//     the contents of PK, KEK, db and dbx.
//   - The Authenticode digest of a PE/COFF image (Microsoft "Windows
//     Authenticode Portable Executable Signature Format" and the PE
//     format specification, computed as EDK2's DxeImageVerificationLib
//     does) and the certificates of its PKCS#7 signature (RFC 2315).
//   - OVMF's variable store image, the VARS .fd: a firmware volume (PI
//     spec vol. 3 §3.2.1) holding an authenticated variable store (EDK2
//     VariableFormat.h; variables per UEFI 2.10 §8.2). Parse, edit,
//     write back the same size; enrol Secure Boot keys as OVMF's
//     EnrollDefaultKeys does; flip OVMF's SecureBootEnable switch.
//   - The events OVMF and systemd-stub extend into PCRs 4, 7 and 11 (TCG
//     PC Client Platform Firmware Profile spec §3.3.4, §10.4; the
//     systemd-stub(7) manual and systemd's TPM2_PCR_MEASUREMENTS.md),
//     their replay, the parsing of a TCG2 crypto-agile event log, and the
//     first event where a prediction and a log part.
//
// The prediction was checked against a recorded boot (QEMU 7.2, OVMF
// 2022.11, swtpm, systemd 252's stub): see testdata/README.md.
package uefi
