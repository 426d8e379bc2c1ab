package tpm

import (
	"bytes"
	"crypto"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode"
	"unicode/utf16"

	"github.com/google/go-eventlog/extract"
	gepb "github.com/google/go-eventlog/proto/state"
	"github.com/google/go-eventlog/register"
	"github.com/google/go-eventlog/tcg"
	tpmpb "github.com/google/go-tpm-tools/proto/tpm"
	"github.com/lestrrat-go/jwx/v3/jwk"
)

// Claims is what [Verify] establishes about a guest's vTPM evidence. Every
// field comes from verified data: PCR values from a quote signed by the AK,
// event-derived fields from events that replay to those PCR values.
type Claims struct {
	// PCRs maps a bank name ("sha256") to PCR index to the lower-case hex
	// PCR value, for every PCR the quote of that bank covers (all 24 with
	// [Attester]). A PCR that is absent was not quoted.
	PCRs map[string]map[int]string `json:"pcrs"`
	// SecureBoot is the UEFI Secure Boot state recorded in the event log.
	SecureBoot SecureBoot `json:"secure_boot"`
	// Events summarizes the verified events of the first bank.
	Events EventSummary `json:"events"`
	// AKThumbprint is the RFC 7638 JWK SHA-256 thumbprint of the AK,
	// base64url without padding (see [Thumbprint]).
	AKThumbprint string `json:"ak_thumbprint"`
	// ExtractionErrors say why event-derived claims (secure boot state,
	// firmware version, EFI applications) are unknown. They are for logs and
	// are not serialized: their text comes from a dependency and is not
	// stable.
	ExtractionErrors []string `json:"-"`
}

// SecureBoot is the UEFI Secure Boot state. Known is false when the log
// does not establish it (a BIOS boot such as SeaBIOS, an empty log, or a
// log whose PCR 7 events do not follow the UEFI rules); a policy that
// requires Secure Boot must then deny.
type SecureBoot struct {
	Known   bool `json:"known"`
	Enabled bool `json:"enabled"`
}

// EventSummary summarizes the events that replayed to the quoted PCRs.
//
// The replay proves the digests of the events, not their types or data.
// Count and PerPCR rest on digests only. Separators and KernelCmdline also
// check the data against its digest, so tampering can hide them but not
// forge them. UEFI and EFIApps rest on event types and are informational:
// a policy decides on PCR values.
type EventSummary struct {
	// Bank is the PCR bank the log was replayed against.
	Bank string `json:"bank"`
	// Count is the number of verified events.
	Count int `json:"count"`
	// PerPCR counts the verified events of each PCR that has any.
	PerPCR map[int]int `json:"per_pcr"`
	// Separators lists, in ascending order, the PCRs holding an
	// EV_SEPARATOR whose data (00000000 or FFFFFFFF) matches its digest:
	// the firmware finished measuring that PCR before the OS loader ran.
	Separators []int `json:"separators"`
	// UEFI is true when the log holds UEFI (EV_EFI_*) events; false for a
	// BIOS boot.
	UEFI bool `json:"uefi"`
	// FirmwareVersion is the EV_S_CRTM_VERSION string of PCR 0, if any.
	FirmwareVersion string `json:"firmware_version,omitempty"`
	// EFIApps are the Authenticode digests (hex) of the EFI applications
	// loaded before ExitBootServices, in load order; with QEMU direct kernel
	// boot through OVMF this is the kernel. Empty when unknown.
	EFIApps []string `json:"efi_apps,omitempty"`
	// KernelCmdline is the kernel command line GRUB measured into PCR 8,
	// if a boot loader did so and its digest matches. Linux's EFI stub
	// measures its command line into PCR 9 as a digest only, which cannot
	// be shown here.
	KernelCmdline string `json:"kernel_cmdline,omitempty"`
}

// Thumbprint returns the RFC 7638 JWK thumbprint (SHA-256, base64url without
// padding) of key, as the runtime data's AK JWK would have it.
func Thumbprint(key crypto.PublicKey) (string, error) {
	k, err := jwk.Import(key)
	if err != nil {
		return "", fmt.Errorf("importing key as JWK: %w", err)
	}
	tp, err := k.Thumbprint(crypto.SHA256)
	if err != nil {
		return "", fmt.Errorf("computing JWK thumbprint: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(tp), nil
}

func hexPCRs(pcrs *tpmpb.PCRs) map[int]string {
	out := make(map[int]string, len(pcrs.GetPcrs()))
	for idx, v := range pcrs.GetPcrs() {
		out[int(idx)] = hex.EncodeToString(v)
	}
	return out
}

// logResult is what one replay of the event log yields.
type logResult struct {
	events           EventSummary
	secureBoot       SecureBoot
	extractionErrors []string
}

// extractOpts relax go-eventlog's structural checks where QEMU's own boot
// paths differ from a disk boot: direct kernel boot through OVMF loads the
// kernel before the "Calling EFI Application" action. The relaxations only
// affect claims, never the replay.
var extractOpts = extract.Opts{
	Loader:                        extract.UnsupportedLoader,
	AllowEFIAppBeforeCallingEvent: true,
	AllowEmptySBVar:               true,
}

// replayLog parses raw and replays it against pcrs (a verified quote's PCR
// values); with withClaims it also extracts the claims. A result in cache
// (nil: none) for the same log, PCR values and options is returned without
// replaying (see [LogCache]). Any panic in the parser becomes ErrEventLog.
func replayLog(raw []byte, pcrs *tpmpb.PCRs, allowEmpty, withClaims bool, cache *LogCache) (res logResult, err error) {
	defer func() {
		if r := recover(); r != nil {
			res, err = logResult{}, fmt.Errorf("%w: parser panic: %v", ErrEventLog, r)
		}
	}()
	algo := gepb.HashAlgo(pcrs.GetHash())
	hash, err := algo.CryptoHash()
	if err != nil {
		return logResult{}, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	res.events = EventSummary{Bank: bankName(hash), PerPCR: map[int]int{}, Separators: []int{}}
	if len(raw) == 0 {
		if !allowEmpty {
			return logResult{}, fmt.Errorf("%w: attestation has no event log", ErrEventLog)
		}
		res.extractionErrors = []string{"no event log"}
		return res, nil
	}

	var key logKey
	if cache != nil {
		key = logCacheKey(raw, pcrs, allowEmpty, withClaims)
		if r, ok := cache.get(key); ok {
			return r, nil
		}
	}
	bank := register.PCRBank{TCGHashAlgo: algo}
	for idx, v := range pcrs.GetPcrs() {
		bank.PCRs = append(bank.PCRs, register.PCR{Index: int(idx), Digest: v, DigestAlg: hash})
	}
	events, err := tcg.ParseAndReplay(raw, bank.MRs(), tcg.ParseOpts{})
	if err != nil {
		return logResult{}, fmt.Errorf("%w: %w", ErrEventLog, err)
	}
	for _, e := range events {
		// The type is not measured; go-eventlog panics on types it does not
		// know, and a claim built on an unknown type would be a guess.
		if _, err := tcg.UntrustedParseEventType(uint32(e.Type)); err != nil {
			return logResult{}, fmt.Errorf("%w: event %d in PCR %d: %w", ErrEventLog, e.Num(), e.Index, err)
		}
	}
	if len(events) == 0 && !allowEmpty {
		return logResult{}, fmt.Errorf("%w: no event of the log is in a quoted PCR", ErrEventLog)
	}
	summarize(&res.events, events, hash)
	if len(events) > 0 {
		if err := checkUnloggedPCRs(pcrs, res.events.PerPCR); err != nil {
			return logResult{}, err
		}
	}
	if !withClaims {
		cache.add(key, res)
		return res, nil
	}

	state, xerr := extract.FirmwareLogState(events, hash, extract.TPMRegisterConfig, extractOpts)
	if xerr != nil {
		for _, e := range unjoin(xerr) {
			res.extractionErrors = append(res.extractionErrors, e.Error())
		}
	}
	if sb := state.GetSecureBoot(); sb != nil {
		res.secureBoot = SecureBoot{Known: true, Enabled: sb.GetEnabled()}
	}
	if p := state.GetPlatform(); p != nil {
		if v, ok := p.GetFirmware().(*gepb.PlatformState_ScrtmVersionId); ok {
			res.events.FirmwareVersion = firmwareString(v.ScrtmVersionId)
		} else if v, ok := p.GetFirmware().(*gepb.PlatformState_GceVersion); ok {
			res.events.FirmwareVersion = fmt.Sprintf("GCE %d", v.GceVersion)
		}
	}
	for _, app := range state.GetEfi().GetApps() {
		res.events.EFIApps = append(res.events.EFIApps, hex.EncodeToString(app.GetDigest()))
	}
	cache.add(key, res)
	return res, nil
}

// loggedPCRs are the PCRs whose every extension firmware, shim, GRUB and
// the Linux EFI stub record in the TCG event log. PCR 10 (IMA) and the
// others are extended by software that keeps its own log, if any.
var loggedPCRs = []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 14}

// checkUnloggedPCRs rejects a log that has no event for a quoted PCR of
// loggedPCRs whose value is not a reset value. The replay cannot notice
// events missing for a PCR that has none left in the log, so a log
// truncated or pruned that way would otherwise replay.
func checkUnloggedPCRs(pcrs *tpmpb.PCRs, perPCR map[int]int) error {
	for _, idx := range loggedPCRs {
		v, ok := pcrs.GetPcrs()[uint32(idx)]
		if !ok || perPCR[idx] > 0 || isResetValue(idx, v) {
			continue
		}
		return fmt.Errorf("%w: PCR %d was extended but the log has no event for it", ErrEventLog, idx)
	}
	return nil
}

// isResetValue reports whether v is a value PCR idx holds before any
// extension: all zeros (all ones for PCRs 17-22), or for PCR 0 the startup
// locality 1-4 in its last byte.
func isResetValue(idx int, v []byte) bool {
	if len(v) == 0 {
		return false
	}
	fill := resetFill(idx)
	for _, b := range v[:len(v)-1] {
		if b != fill {
			return false
		}
	}
	last := v[len(v)-1]
	return last == fill || (idx == 0 && last <= 4)
}

// summarize fills the digest-backed fields of s from verified events.
func summarize(s *EventSummary, events []tcg.Event, hash crypto.Hash) {
	separatorData := [][]byte{{0, 0, 0, 0}, {0xff, 0xff, 0xff, 0xff}}
	var cmdlines []string
	for _, e := range events {
		s.Count++
		s.PerPCR[e.Index]++
		if uint32(e.Type) >= 0x80000000 {
			s.UEFI = true
		}
		switch e.Type {
		case tcg.Separator:
			if slices.ContainsFunc(separatorData, func(d []byte) bool { return bytes.Equal(d, e.Data) }) &&
				digestOf(hash, e.Data, e.Digest) && !slices.Contains(s.Separators, e.Index) {
				s.Separators = append(s.Separators, e.Index)
			}
		case tcg.Ipl:
			if c, ok := grubCmdline(e, hash); ok && e.Index == 8 {
				cmdlines = append(cmdlines, c)
			}
		}
	}
	slices.Sort(s.Separators)
	if len(cmdlines) == 1 {
		s.KernelCmdline = cmdlines[0]
	}
}

// grubCmdline returns the command line of a GRUB "kernel_cmdline" event
// whose digest covers it.
func grubCmdline(e tcg.Event, hash crypto.Hash) (string, bool) {
	for _, prefix := range []string{"kernel_cmdline: ", "grub_kernel_cmdline "} {
		rest, ok := bytes.CutPrefix(e.Data, []byte(prefix))
		if !ok {
			continue
		}
		trimmed := bytes.TrimSuffix(rest, []byte{0})
		if digestOf(hash, rest, e.Digest) || digestOf(hash, trimmed, e.Digest) {
			return string(trimmed), true
		}
	}
	return "", false
}

func digestOf(hash crypto.Hash, data, digest []byte) bool {
	h := hash.New()
	h.Write(data)
	return bytes.Equal(h.Sum(nil), digest)
}

// firmwareString renders an S-CRTM version: UTF-16LE text (as EDK2 and
// most firmware write it), else hex.
func firmwareString(b []byte) string {
	if len(b)%2 == 0 {
		u := make([]uint16, len(b)/2)
		for i := range u {
			u[i] = binary.LittleEndian.Uint16(b[2*i:])
		}
		s := strings.TrimRight(string(utf16.Decode(u)), "\x00")
		if !strings.ContainsFunc(s, func(r rune) bool { return !unicode.IsPrint(r) }) {
			return s
		}
	}
	return hex.EncodeToString(b)
}

func bankName(h crypto.Hash) string {
	for name, alg := range bankAlgs {
		if hh, err := alg.Hash(); err == nil && hh == h {
			return name
		}
	}
	return strings.ToLower(strings.ReplaceAll(h.String(), "-", ""))
}

// unjoin splits an errors.Join error into its parts.
func unjoin(err error) []error {
	var j interface{ Unwrap() []error }
	if errors.As(err, &j) {
		return j.Unwrap()
	}
	return []error{err}
}

// resetFill is the byte every byte of PCR idx holds at TPM reset (TCG PC
// Client Platform TPM Profile): 0xff for the DRTM PCRs 17 to 22, zero for
// the others.
func resetFill(idx int) byte {
	if idx >= 17 && idx <= 22 {
		return 0xff
	}
	return 0
}

// NeverExtended reports whether hexValue, a PCR value as in Claims.PCRs,
// is exactly PCR idx's value at TPM reset: all zeros, all ones for PCRs 17
// to 22. (PCR 0 started at locality 1-4 holds the locality in its last
// byte; that is not this value.)
func NeverExtended(idx int, hexValue string) bool {
	want := byte('0')
	if resetFill(idx) == 0xff {
		want = 'f'
	}
	for i := range len(hexValue) {
		if hexValue[i] != want {
			return false
		}
	}
	return hexValue != ""
}
