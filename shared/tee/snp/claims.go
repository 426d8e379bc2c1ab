package snp

import (
	"encoding/hex"
	"strings"

	"github.com/google/go-sev-guest/abi"
	"github.com/google/go-sev-guest/kds"
	spb "github.com/google/go-sev-guest/proto/sevsnp"
)

// Claims are the fields of a verified SNP report. Byte fields are lower-case
// hex.
type Claims struct {
	// Version is the report format version.
	Version uint32 `json:"version"`
	// GuestSVN is the guest security version number from the ID block.
	GuestSVN uint32 `json:"guest_svn"`
	// Policy is the guest policy the guest was launched with.
	Policy Policy `json:"policy"`
	// FamilyID and ImageID come from the ID block (16 bytes each).
	FamilyID string `json:"family_id"`
	ImageID  string `json:"image_id"`
	// VMPL is the privilege level that requested the report.
	VMPL uint32 `json:"vmpl"`
	// CurrentTCB, ReportedTCB, CommittedTCB and LaunchTCB are the platform
	// TCB versions; ReportedTCB equals the endorsement key's TCB.
	CurrentTCB   TCB `json:"current_tcb"`
	ReportedTCB  TCB `json:"reported_tcb"`
	CommittedTCB TCB `json:"committed_tcb"`
	LaunchTCB    TCB `json:"launch_tcb"`
	// PlatformInfo describes the platform's state.
	PlatformInfo PlatformInfo `json:"platform_info"`
	// SignerInfo says which key signed the report.
	SignerInfo SignerInfo `json:"signer_info"`
	// ReportData is REPORT_DATA (64 bytes).
	ReportData string `json:"report_data"`
	// Measurement is the launch digest (48 bytes).
	Measurement string `json:"measurement"`
	// HostData is HOST_DATA set by the host at launch (32 bytes).
	HostData string `json:"host_data"`
	// IDKeyDigest and AuthorKeyDigest are the ID block key digests (48
	// bytes each, zero without an ID block).
	IDKeyDigest     string `json:"id_key_digest"`
	AuthorKeyDigest string `json:"author_key_digest"`
	// ReportID and ReportIDMA identify the guest and its migration agent (32
	// bytes each).
	ReportID   string `json:"report_id"`
	ReportIDMA string `json:"report_id_ma"`
	// ChipID identifies the chip (64 bytes; zero when masked).
	ChipID string `json:"chip_id"`
	// CurrentFirmware and CommittedFirmware are the SNP firmware versions.
	CurrentFirmware   Firmware `json:"current_firmware"`
	CommittedFirmware Firmware `json:"committed_firmware"`
	// Product is the product line the chain was verified for: "Milan",
	// "Genoa" or "Turin".
	Product string `json:"product"`
	// Simulated is true when the report was verified against a simulated root
	// (Options.SimRoot) rather than AMD's roots.
	Simulated bool `json:"simulated"`
}

// Policy is the decoded guest policy.
type Policy struct {
	// Value is the raw 64-bit policy.
	Value uint64 `json:"value"`
	// ABIMajor and ABIMinor are the minimum firmware ABI version.
	ABIMajor uint8 `json:"abi_major"`
	ABIMinor uint8 `json:"abi_minor"`
	// SMT is true if the guest may run with SMT enabled.
	SMT bool `json:"smt"`
	// MigrationAgent is true if a migration agent may be associated.
	MigrationAgent bool `json:"migration_agent"`
	// Debug is true if the host may debug (decrypt) the guest.
	Debug bool `json:"debug"`
	// SingleSocket is true if the guest may run on one socket only.
	SingleSocket bool `json:"single_socket"`
	// CXLAllowed is true if CXL may be populated with devices or memory.
	CXLAllowed bool `json:"cxl_allowed"`
	// MemAES256XTS is true if AES-256-XTS memory encryption is required.
	MemAES256XTS bool `json:"mem_aes_256_xts"`
	// RAPLDisabled is true if RAPL must be disabled.
	RAPLDisabled bool `json:"rapl_disabled"`
	// CiphertextHiding is true if ciphertext hiding must be enabled.
	CiphertextHiding bool `json:"ciphertext_hiding"`
	// PageSwapDisabled is true if page swap commands are disabled.
	PageSwapDisabled bool `json:"page_swap_disabled"`
}

// TCB is a decoded TCB_VERSION (Milan/Genoa layout). Turin's layout (FMC in
// byte 0, then bootloader, TEE and SNP) is not modelled: go-sev-guest
// v0.15 reads a VCEK's TCB in the Milan/Genoa layout only (no FMC), so a
// Turin report is not expected to pass the reported = VCEK TCB check, and
// no Turin evidence is recorded here to show otherwise. Value is the raw
// word in either case.
type TCB struct {
	// Value is the raw 64-bit TCB version.
	Value uint64 `json:"value"`
	// Bootloader, TEE, SNP and Microcode are the security patch levels.
	Bootloader uint8 `json:"bl"`
	TEE        uint8 `json:"tee"`
	SNP        uint8 `json:"snp"`
	Microcode  uint8 `json:"microcode"`
}

// PlatformInfo is the decoded PLATFORM_INFO field.
type PlatformInfo struct {
	// Value is the raw 64-bit field.
	Value uint64 `json:"value"`
	// SMTEnabled: SMT is enabled on the platform.
	SMTEnabled bool `json:"smt_enabled"`
	// TSMEEnabled: transparent SME is enabled.
	TSMEEnabled bool `json:"tsme_enabled"`
	// ECCEnabled: ECC memory is in use.
	ECCEnabled bool `json:"ecc_enabled"`
	// RAPLDisabled: RAPL is disabled.
	RAPLDisabled bool `json:"rapl_disabled"`
	// CiphertextHidingEnabled: ciphertext hiding is enabled for DRAM.
	CiphertextHidingEnabled bool `json:"ciphertext_hiding_enabled"`
	// AliasCheckComplete: the memory alias check has completed.
	AliasCheckComplete bool `json:"alias_check_complete"`
	// TIOEnabled: SEV-TIO is enabled.
	TIOEnabled bool `json:"tio_enabled"`
}

// SignerInfo is the decoded SIGNER_INFO field.
type SignerInfo struct {
	// SigningKey is "vcek" or "vlek".
	SigningKey string `json:"signing_key"`
	// MaskChipKey is true if CHIP_ID is masked (zero).
	MaskChipKey bool `json:"mask_chip_key"`
	// AuthorKeyEn is true if the ID block has an author key.
	AuthorKeyEn bool `json:"author_key_en"`
}

// Firmware is an SNP firmware version.
type Firmware struct {
	Major uint8 `json:"major"`
	Minor uint8 `json:"minor"`
	Build uint8 `json:"build"`
}

func decodeTCB(v uint64) TCB {
	p := kds.DecomposeTCBVersion(kds.TCBVersion(v))
	return TCB{Value: v, Bootloader: p.BlSpl, TEE: p.TeeSpl, SNP: p.SnpSpl, Microcode: p.UcodeSpl}
}

// decodePolicy decodes the policy bits; the report parser has already
// rejected reserved bits.
func decodePolicy(v uint64) Policy {
	p, _ := abi.ParseSnpPolicy(v)
	return Policy{
		Value:            v,
		ABIMajor:         p.ABIMajor,
		ABIMinor:         p.ABIMinor,
		SMT:              p.SMT,
		MigrationAgent:   p.MigrateMA,
		Debug:            p.Debug,
		SingleSocket:     p.SingleSocket,
		CXLAllowed:       p.CXLAllowed,
		MemAES256XTS:     p.MemAES256XTS,
		RAPLDisabled:     p.RAPLDis,
		CiphertextHiding: p.CipherTextHidingDRAM,
		PageSwapDisabled: p.PageSwapDisable,
	}
}

// decodePlatformInfo decodes the known bits and ignores unknown ones, which
// newer firmware may set.
func decodePlatformInfo(v uint64) PlatformInfo {
	bit := func(n uint) bool { return v&(1<<n) != 0 }
	return PlatformInfo{
		Value:                   v,
		SMTEnabled:              bit(0),
		TSMEEnabled:             bit(1),
		ECCEnabled:              bit(2),
		RAPLDisabled:            bit(3),
		CiphertextHidingEnabled: bit(4),
		AliasCheckComplete:      bit(5),
		TIOEnabled:              bit(7),
	}
}

func newClaims(r *spb.Report, info abi.SignerInfo, product string, simulated bool) *Claims {
	h := hex.EncodeToString
	return &Claims{
		Version:      r.GetVersion(),
		GuestSVN:     r.GetGuestSvn(),
		Policy:       decodePolicy(r.GetPolicy()),
		FamilyID:     h(r.GetFamilyId()),
		ImageID:      h(r.GetImageId()),
		VMPL:         r.GetVmpl(),
		CurrentTCB:   decodeTCB(r.GetCurrentTcb()),
		ReportedTCB:  decodeTCB(r.GetReportedTcb()),
		CommittedTCB: decodeTCB(r.GetCommittedTcb()),
		LaunchTCB:    decodeTCB(r.GetLaunchTcb()),
		PlatformInfo: decodePlatformInfo(r.GetPlatformInfo()),
		SignerInfo: SignerInfo{
			SigningKey:  strings.ToLower(info.SigningKey.String()),
			MaskChipKey: info.MaskChipKey,
			AuthorKeyEn: info.AuthorKeyEn,
		},
		ReportData:      h(r.GetReportData()),
		Measurement:     h(r.GetMeasurement()),
		HostData:        h(r.GetHostData()),
		IDKeyDigest:     h(r.GetIdKeyDigest()),
		AuthorKeyDigest: h(r.GetAuthorKeyDigest()),
		ReportID:        h(r.GetReportId()),
		ReportIDMA:      h(r.GetReportIdMa()),
		ChipID:          h(r.GetChipId()),
		CurrentFirmware: Firmware{
			Major: uint8(r.GetCurrentMajor()),
			Minor: uint8(r.GetCurrentMinor()),
			Build: uint8(r.GetCurrentBuild()),
		},
		CommittedFirmware: Firmware{
			Major: uint8(r.GetCommittedMajor()),
			Minor: uint8(r.GetCommittedMinor()),
			Build: uint8(r.GetCommittedBuild()),
		},
		Product:   product,
		Simulated: simulated,
	}
}
