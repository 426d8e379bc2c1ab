package tpm

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	mrand "math/rand/v2"
	"slices"
	"strings"
	"testing"

	pb "github.com/google/go-tpm-tools/proto/attest"
	tpmpb "github.com/google/go-tpm-tools/proto/tpm"
	"github.com/google/go-tpm/legacy/tpm2"
)

var sentinels = []error{ErrMalformed, ErrAKMismatch, ErrSignature, ErrNonce, ErrPCRDigest, ErrEventLog}

var allSeparators = []int{0, 1, 2, 3, 4, 5, 6, 7}

func TestVerifyAcceptsBoots(t *testing.T) {
	tests := map[string]struct {
		log          []byte
		opts         Options
		wantSB       SecureBoot
		wantCmdline  string
		wantFirmware string
		wantEFIApps  int
	}{
		"ubuntu 24.04 GRUB, Secure Boot off": {
			log:          ubuntu2404Log,
			wantSB:       SecureBoot{Known: true, Enabled: false},
			wantCmdline:  "/vmlinuz-6.8.0-1010-gcp root=PARTUUID=8270f3c9-b4e4-4345-80ee-5a62db7ebf3f ro console=ttyS0,115200 panic=-1",
			wantFirmware: "GCE 2",
			wantEFIApps:  2,
		},
		"rhel 8 GRUB, Secure Boot on": {
			log:          rhel8Log,
			wantSB:       SecureBoot{Known: true, Enabled: true},
			wantCmdline:  "(hd0,gpt2)/boot/vmlinuz-4.18.0-240.22.1.el8_3.x86_64 root=UUID=f3948fb4-cce7-4193-940a-c50052e93bf3 ro net.ifnames=0 biosdevname=0 scsi_mod.use_blk_mq=Y crashkernel=auto console=ttyS0,38400n8",
			wantFirmware: "GCE 1",
			wantEFIApps:  3,
		},
		"COS 101 all banks, Secure Boot on": {
			log:          cos101Log,
			opts:         Options{Banks: []string{"sha256", "sha1", "sha384"}},
			wantSB:       SecureBoot{Known: true, Enabled: true},
			wantCmdline:  "/syslinux/vmlinuz.A init=/usr/lib/systemd/systemd",
			wantFirmware: "GCE 1",
			wantEFIApps:  4,
		},
		"debian 10 SHA-1 only log on the sha1 bank": {
			log:          debian10Log,
			opts:         Options{Banks: []string{"sha1"}},
			wantSB:       SecureBoot{Known: true, Enabled: true},
			wantFirmware: "GCE 1",
			wantEFIApps:  0, // the log has no ExitBootServices event
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			f := attestWithLog(t, tc.log)
			c, err := Verify(f.att, f.ak, f.nonce, tc.opts)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			banks := tc.opts.Banks
			if len(banks) == 0 {
				banks = []string{"sha256"}
			}
			for _, b := range banks {
				if got := len(c.PCRs[b]); got != 24 {
					t.Errorf("bank %s has %d PCRs, want 24", b, got)
				}
			}
			if len(c.PCRs) != len(banks) {
				t.Errorf("claims hold %d banks, want %d", len(c.PCRs), len(banks))
			}
			if c.PCRs["sha256"] != nil {
				for idx, v := range f.pcrs {
					if got := c.PCRs["sha256"][idx]; got != hex.EncodeToString(v) {
						t.Errorf("PCR %d = %s, want %x", idx, got, v)
					}
				}
			}
			if c.SecureBoot != tc.wantSB {
				t.Errorf("SecureBoot = %+v, want %+v (extraction errors %v)", c.SecureBoot, tc.wantSB, c.ExtractionErrors)
			}
			if !strings.HasPrefix(c.Events.KernelCmdline, tc.wantCmdline) || (tc.wantCmdline == "") != (c.Events.KernelCmdline == "") {
				t.Errorf("KernelCmdline = %q, want prefix %q", c.Events.KernelCmdline, tc.wantCmdline)
			}
			if c.Events.FirmwareVersion != tc.wantFirmware {
				t.Errorf("FirmwareVersion = %q, want %q", c.Events.FirmwareVersion, tc.wantFirmware)
			}
			if len(c.Events.EFIApps) != tc.wantEFIApps {
				t.Errorf("EFIApps = %v, want %d (extraction errors %v)", c.Events.EFIApps, tc.wantEFIApps, c.ExtractionErrors)
			}
			if !slices.Equal(c.Events.Separators, allSeparators) {
				t.Errorf("Separators = %v, want %v", c.Events.Separators, allSeparators)
			}
			if !c.Events.UEFI || c.Events.Count == 0 || c.Events.Bank != banks[0] {
				t.Errorf("Events = %+v, want a UEFI log with events on %s", c.Events, banks[0])
			}
			sum := 0
			for _, n := range c.Events.PerPCR {
				sum += n
			}
			if sum != c.Events.Count {
				t.Errorf("PerPCR adds up to %d, Count is %d", sum, c.Events.Count)
			}
			want, err := Thumbprint(f.ak)
			if err != nil || c.AKThumbprint != want || want == "" {
				t.Errorf("AKThumbprint = %q, want %q (%v)", c.AKThumbprint, want, err)
			}
		})
	}
}

func TestVerifyAcceptsRecordedQEMU(t *testing.T) {
	tests := map[string]struct {
		att        []byte
		banks      []string
		wantSB     SecureBoot
		wantUEFI   bool
		wantCount  int
		wantApps   int
		wantPerPCR map[int]int
	}{
		"SeaBIOS": {
			att: seabiosAttestation, wantSB: SecureBoot{}, wantCount: 15,
			wantPerPCR: map[int]int{0: 1, 1: 2, 2: 6, 3: 1, 4: 2, 5: 1, 6: 1, 7: 1},
		},
		"SeaBIOS sha1 and sha384": {
			att: seabiosAttestation, banks: []string{"sha1", "sha384"}, wantSB: SecureBoot{}, wantCount: 15,
			wantPerPCR: map[int]int{0: 1, 1: 2, 2: 6, 3: 1, 4: 2, 5: 1, 6: 1, 7: 1},
		},
		"OVMF direct kernel boot": {
			att: ovmfAttestation, wantSB: SecureBoot{Known: true}, wantUEFI: true, wantCount: 25, wantApps: 1,
			wantPerPCR: map[int]int{0: 4, 1: 3, 2: 2, 3: 1, 4: 3, 5: 3, 6: 1, 7: 6, 9: 2},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			c, err := Verify(tc.att, recordedAK(t, tc.att), recordedNonce(), Options{Banks: tc.banks})
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if c.SecureBoot != tc.wantSB || c.Events.UEFI != tc.wantUEFI || c.Events.Count != tc.wantCount ||
				len(c.Events.EFIApps) != tc.wantApps || !slices.Equal(c.Events.Separators, allSeparators) {
				t.Errorf("claims = %+v %+v, want secure boot %+v, UEFI %v, %d events, %d EFI apps",
					c.SecureBoot, c.Events, tc.wantSB, tc.wantUEFI, tc.wantCount, tc.wantApps)
			}
			for pcr, n := range tc.wantPerPCR {
				if c.Events.PerPCR[pcr] != n {
					t.Errorf("PCR %d has %d events, want %d", pcr, c.Events.PerPCR[pcr], n)
				}
			}
			if len(c.PCRs) != max(1, len(tc.banks)) {
				t.Errorf("claims hold banks %v", c.PCRs)
			}
		})
	}
}

func TestClaimsJSON(t *testing.T) {
	c, err := Verify(ovmfAttestation, recordedAK(t, ovmfAttestation), recordedNonce(), Options{})
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	c.ExtractionErrors = []string{"must not be serialized"}
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatalf("marshalling claims: %v", err)
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(b, &top); err != nil {
		t.Fatalf("unmarshalling claims: %v", err)
	}
	for _, k := range []string{"pcrs", "secure_boot", "events", "ak_thumbprint"} {
		if top[k] == nil {
			t.Errorf("claims JSON lacks %q: %s", k, b)
		}
	}
	if len(top) != 4 {
		t.Errorf("claims JSON has %d members, want 4: %s", len(top), b)
	}
	var events, sb map[string]any
	var pcrs map[string]map[string]string
	for k, v := range map[string]any{"events": &events, "secure_boot": &sb, "pcrs": &pcrs} {
		if err := json.Unmarshal(top[k], v); err != nil {
			t.Fatalf("unmarshalling %s: %v", k, err)
		}
	}
	for _, k := range []string{"bank", "count", "per_pcr", "separators", "uefi", "efi_apps"} {
		if _, ok := events[k]; !ok {
			t.Errorf("events JSON lacks %q: %s", k, b)
		}
	}
	if _, ok := sb["known"]; !ok {
		t.Errorf("secure_boot JSON lacks known: %s", b)
	}
	if len(pcrs["sha256"]["7"]) != 64 {
		t.Errorf("PCR 7 missing from JSON: %s", b)
	}
	if !bytes.Contains(b, []byte(`"ak_thumbprint":"`)) || bytes.Contains(b, []byte("must not be serialized")) {
		t.Errorf("claims JSON = %s", b)
	}
}

// quoteIndex returns the index of the quote over alg in a.
func quoteIndex(t testing.TB, a *pb.Attestation, alg tpm2.Algorithm) int {
	t.Helper()
	for i, q := range a.GetQuotes() {
		if tpm2.Algorithm(q.GetPcrs().GetHash()) == alg {
			return i
		}
	}
	t.Fatalf("no %v quote", alg)
	return -1
}

func TestVerifyRejects(t *testing.T) {
	f := attestWithLog(t, ubuntu2404Log)
	otherEC, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	otherRSA, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	log := eventLogOf(t, f.att)
	events := walkLog(t, log)
	// A measured event of PCR 4 (an EFI application), and the last event.
	var pcr4 logEvent
	for _, e := range events {
		if e.pcr == 4 && e.typ != 3 {
			pcr4 = e
		}
	}
	last := events[len(events)-1]
	without := func(pcr uint32) []byte {
		var b []byte
		for _, e := range events {
			if e.pcr != pcr || e.typ == 3 {
				b = append(b, log[e.start:e.end]...)
			}
		}
		return b
	}
	edit := func(fn func(b []byte)) []byte {
		b := slices.Clone(log)
		fn(b)
		return b
	}
	sha256Quote := func(fn func(q *tpmpb.Quote)) func(*pb.Attestation) {
		return func(a *pb.Attestation) { fn(a.Quotes[quoteIndex(t, a, tpm2.AlgSHA256)]) }
	}
	unrestrictedAK := mutate(t, f.att, func(a *pb.Attestation) {
		pub, err := tpm2.DecodePublic(a.AkPub)
		if err != nil {
			t.Fatal(err)
		}
		pub.Attributes &^= tpm2.FlagRestricted
		if a.AkPub, err = pub.Encode(); err != nil {
			t.Fatal(err)
		}
	})

	tests := map[string]struct {
		att     []byte
		ak      crypto.PublicKey // nil: f.ak
		noAK    bool
		nonce   []byte // nil: f.nonce
		opts    Options
		wantErr error
	}{
		"valid (control)": {att: f.att},
		"valid without event log when allowed": {
			att: withEventLog(t, f.att, nil), opts: Options{AllowEmptyEventLog: true},
		},
		"not a protobuf":         {att: []byte{0xff, 0xff, 0xff}, wantErr: ErrMalformed},
		"empty attestation":      {att: nil, wantErr: ErrMalformed},
		"AK public area garbage": {att: mutate(t, f.att, func(a *pb.Attestation) { a.AkPub = []byte{0, 1, 2} }), wantErr: ErrMalformed},
		"other ECC AK":           {att: f.att, ak: &otherEC.PublicKey, wantErr: ErrAKMismatch},
		"other RSA AK":           {att: f.att, ak: &otherRSA.PublicKey, wantErr: ErrAKMismatch},
		"no AK given":            {att: f.att, noAK: true, wantErr: ErrAKMismatch},
		"AK not restricted":      {att: unrestrictedAK, wantErr: ErrAKMismatch},
		"other nonce":            {att: f.att, nonce: []byte("another challenge"), wantErr: ErrNonce},
		"nonce prefix":           {att: f.att, nonce: f.nonce[:16], wantErr: ErrNonce},
		"no nonce given":         {att: f.att, nonce: []byte{}, wantErr: ErrNonce},
		"PCR value altered": {
			att:     mutate(t, f.att, sha256Quote(func(q *tpmpb.Quote) { q.Pcrs.Pcrs[7][0] ^= 1 })),
			wantErr: ErrPCRDigest,
		},
		"PCR value dropped": {
			att:     mutate(t, f.att, sha256Quote(func(q *tpmpb.Quote) { delete(q.Pcrs.Pcrs, 23) })),
			wantErr: ErrPCRDigest,
		},
		"PCR value added": {
			att:     mutate(t, f.att, sha256Quote(func(q *tpmpb.Quote) { q.Pcrs.Pcrs[30] = make([]byte, 32) })),
			wantErr: ErrPCRDigest,
		},
		"sha1 quote relabelled sha256": {
			att: mutate(t, f.att, func(a *pb.Attestation) {
				i, j := quoteIndex(t, a, tpm2.AlgSHA1), quoteIndex(t, a, tpm2.AlgSHA256)
				a.Quotes[i].Pcrs.Hash = tpmpb.HashAlgo_SHA256
				a.Quotes = slices.Delete(a.Quotes, j, j+1)
			}),
			wantErr: ErrPCRDigest,
		},
		"quoted data altered": {
			att:     mutate(t, f.att, sha256Quote(func(q *tpmpb.Quote) { q.Quote[len(q.Quote)-1] ^= 1 })),
			wantErr: ErrSignature,
		},
		"signature altered": {
			att:     mutate(t, f.att, sha256Quote(func(q *tpmpb.Quote) { q.RawSig[len(q.RawSig)-1] ^= 1 })),
			wantErr: ErrSignature,
		},
		"signature of the sha1 quote": {
			att: mutate(t, f.att, func(a *pb.Attestation) {
				a.Quotes[quoteIndex(t, a, tpm2.AlgSHA256)].RawSig = a.Quotes[quoteIndex(t, a, tpm2.AlgSHA1)].RawSig
			}),
			wantErr: ErrSignature,
		},
		"signature garbage": {
			att:     mutate(t, f.att, sha256Quote(func(q *tpmpb.Quote) { q.RawSig = []byte{1} })),
			wantErr: ErrMalformed,
		},
		"no sha256 quote": {
			att: mutate(t, f.att, func(a *pb.Attestation) {
				j := quoteIndex(t, a, tpm2.AlgSHA256)
				a.Quotes = slices.Delete(a.Quotes, j, j+1)
			}),
			wantErr: ErrMalformed,
		},
		"two sha256 quotes": {
			att: mutate(t, f.att, func(a *pb.Attestation) {
				a.Quotes = append(a.Quotes, a.Quotes[quoteIndex(t, a, tpm2.AlgSHA256)])
			}),
			wantErr: ErrMalformed,
		},
		"no event log":              {att: withEventLog(t, f.att, nil), wantErr: ErrEventLog},
		"event log of another boot": {att: withEventLog(t, f.att, rhel8Log), wantErr: ErrEventLog},
		"event log truncated":       {att: withEventLog(t, f.att, log[:len(log)-1]), wantErr: ErrEventLog},
		"event log without its last event": {
			att: withEventLog(t, f.att, log[:last.start]), wantErr: ErrEventLog,
		},
		"event log with an event repeated": {
			att: withEventLog(t, f.att, append(slices.Clone(log), log[pcr4.start:pcr4.end]...)), wantErr: ErrEventLog,
		},
		"event log without the events of PCR 9": {
			att: withEventLog(t, f.att, without(9)), wantErr: ErrEventLog,
		},
		"event log without the events of PCR 14": {
			att: withEventLog(t, f.att, without(14)), wantErr: ErrEventLog,
		},
		"event log with only its Spec ID event": {
			att: withEventLog(t, f.att, log[:events[0].end]), wantErr: ErrEventLog,
		},
		"event log with only its Spec ID event when allowed": {
			att: withEventLog(t, f.att, log[:events[0].end]), opts: Options{AllowEmptyEventLog: true},
		},
		"event digest altered": {
			att: withEventLog(t, f.att, edit(func(b []byte) { b[pcr4.sha256Off] ^= 0x80 })), wantErr: ErrEventLog,
		},
		"event moved to another PCR": {
			att: withEventLog(t, f.att, edit(func(b []byte) { b[pcr4.start] = 11 })), wantErr: ErrEventLog,
		},
		"event type unknown": {
			att: withEventLog(t, f.att, edit(func(b []byte) { b[pcr4.typeOff+2] = 0x42 })), wantErr: ErrEventLog,
		},
		"event log garbage": {
			att: withEventLog(t, f.att, bytes.Repeat([]byte{0xa5}, 100)), wantErr: ErrEventLog,
		},
		"SHA-1 only log against sha256": {
			att: withEventLog(t, f.att, debian10Log), wantErr: ErrEventLog,
		},
		"sha256 log against missing sha512 bank option": {
			att: f.att, opts: Options{Banks: []string{"sha512"}}, wantErr: errOption,
		},
		"bank listed twice": {
			att: f.att, opts: Options{Banks: []string{"sha256", "sha256"}}, wantErr: errOption,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			ak, nonce := tc.ak, tc.nonce
			if ak == nil && !tc.noAK {
				ak = f.ak
			}
			if nonce == nil {
				nonce = f.nonce
			}
			c, err := Verify(tc.att, ak, nonce, tc.opts)
			checkErr(t, err, tc.wantErr)
			if err != nil && strings.Contains(err.Error(), "panic") {
				t.Errorf("rejected only by a recovered panic: %v", err)
			}
			if err == nil && c == nil {
				t.Fatal("Verify returned neither claims nor an error")
			}
			if err != nil && c != nil {
				t.Errorf("Verify returned claims with error %v", err)
			}
		})
	}
}

// errOption stands for the plain error Verify returns on bad Options.
var errOption = errors.New("bad options")

func checkErr(t *testing.T, err, want error) {
	t.Helper()
	switch {
	case want == nil:
		if err != nil {
			t.Fatalf("Verify: %v, want success", err)
		}
	case want == errOption:
		if err == nil || slices.ContainsFunc(sentinels, func(s error) bool { return errors.Is(err, s) }) {
			t.Fatalf("Verify: %v, want an options error", err)
		}
	default:
		if !errors.Is(err, want) {
			t.Fatalf("Verify: %v, want %v", err, want)
		}
		for _, s := range sentinels {
			if s != want && errors.Is(err, s) {
				t.Errorf("Verify: %v also matches %v", err, s)
			}
		}
	}
}

// TestVerifyEventLogTruncated cuts the recorded logs at every length. Every
// cut must be rejected, except one that removes only the final "Exit Boot
// Services" actions of PCR 5: go-eventlog re-creates those (a workaround for
// firmware that does not log them), so that log still explains every PCR.
func TestVerifyEventLogTruncated(t *testing.T) {
	for name, att := range map[string][]byte{"SeaBIOS": seabiosAttestation, "OVMF": ovmfAttestation} {
		t.Run(name, func(t *testing.T) {
			ak, log := recordedAK(t, att), eventLogOf(t, att)
			events := walkLog(t, log)
			onlyEBSRemoved := func(n int) bool {
				for _, e := range events {
					if e.end <= n {
						continue
					}
					if e.start < n || e.pcr != 5 || !bytes.HasPrefix(log[e.dataOff:e.end], []byte("Exit Boot Services")) {
						return false
					}
				}
				return true
			}
			accepted := 0
			for n := range len(log) {
				_, err := Verify(withEventLog(t, att, log[:n]), ak, recordedNonce(), Options{})
				if err == nil && onlyEBSRemoved(n) {
					accepted++
					continue
				}
				if !errors.Is(err, ErrEventLog) {
					t.Fatalf("log cut to %d of %d bytes: %v, want %v", n, len(log), err, ErrEventLog)
				}
			}
			t.Logf("%d cuts, %d accepted thanks to the PCR 5 workaround", len(log), accepted)
		})
	}
}

// protectedBytes marks the bytes of log whose change the replay against the
// sha256 bank must detect: the SHA-256 digests of events extended into a
// quoted PCR. (The data of an event is not protected by the replay, even
// when its digest is a hash of it; claims use such data only after checking
// it against the digest.)
func protectedBytes(t testing.TB, log []byte) []bool {
	t.Helper()
	prot := make([]bool, len(log))
	for _, e := range walkLog(t, log)[1:] {
		if e.typ == 3 || e.pcr >= 24 || e.sha256Off < 0 {
			continue
		}
		for i := range sha256.Size {
			prot[e.sha256Off+i] = true
		}
	}
	return prot
}

// TestVerifyEventLogBitFlips flips random bits of real event logs. Verify
// must never panic, must reject with ErrEventLog or ErrMalformed, and may
// accept only when every flipped bit lies outside what the replay protects
// (event types of known kinds, event data).
func TestVerifyEventLogBitFlips(t *testing.T) {
	f := attestWithLog(t, ubuntu2404Log)
	cases := map[string]struct {
		att   []byte
		ak    crypto.PublicKey
		nonce []byte
	}{
		"simulator ubuntu 24.04": {f.att, f.ak, f.nonce},
		"recorded SeaBIOS":       {seabiosAttestation, recordedAK(t, seabiosAttestation), recordedNonce()},
		"recorded OVMF":          {ovmfAttestation, recordedAK(t, ovmfAttestation), recordedNonce()},
	}
	iterations := 1500
	if testing.Short() {
		iterations = 300
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			log := eventLogOf(t, tc.att)
			prot := protectedBytes(t, log)
			rng := mrand.New(mrand.NewPCG(1, uint64(len(log))))
			accepted, recovered := 0, 0
			for i := range iterations {
				b := slices.Clone(log)
				touched := false
				for range 1 + rng.IntN(8) {
					pos := rng.IntN(len(b))
					b[pos] ^= 1 << rng.IntN(8)
					touched = touched || prot[pos]
				}
				if bytes.Equal(b, log) {
					continue
				}
				_, err := Verify(withEventLog(t, tc.att, b), tc.ak, tc.nonce, Options{})
				switch {
				case err == nil && touched:
					t.Fatalf("flip %d: a log with a protected byte changed was accepted", i)
				case err == nil:
					accepted++
				case !errors.Is(err, ErrEventLog) && !errors.Is(err, ErrMalformed):
					t.Fatalf("flip %d: %v, want %v or %v", i, err, ErrEventLog, ErrMalformed)
				case strings.Contains(err.Error(), "panic"):
					recovered++
				}
			}
			t.Logf("%d flips: %d accepted (unprotected bytes only), %d parser panics recovered", iterations, accepted, recovered)
		})
	}
}

// TestVerifyEventLogProtectedFlips flips one bit in every SHA-256 digest of
// every measured event: each must be rejected.
func TestVerifyEventLogProtectedFlips(t *testing.T) {
	for name, att := range map[string][]byte{"SeaBIOS": seabiosAttestation, "OVMF": ovmfAttestation} {
		t.Run(name, func(t *testing.T) {
			ak, log := recordedAK(t, att), eventLogOf(t, att)
			n := 0
			for _, e := range walkLog(t, log)[1:] {
				if e.typ == 3 || e.sha256Off < 0 {
					continue
				}
				for _, off := range []int{e.sha256Off, e.sha256Off + sha256.Size - 1} {
					b := slices.Clone(log)
					b[off] ^= 0x01
					if _, err := Verify(withEventLog(t, att, b), ak, recordedNonce(), Options{}); !errors.Is(err, ErrEventLog) {
						t.Errorf("digest of event at %d in PCR %d altered: %v, want %v", e.start, e.pcr, err, ErrEventLog)
					}
					n++
				}
			}
			if n == 0 {
				t.Fatal("no measured event found")
			}
		})
	}
}

func FuzzVerify(f *testing.F) {
	f.Add(seabiosAttestation)
	f.Add(ovmfAttestation)
	ak, nonce := recordedAK(f, seabiosAttestation), recordedNonce()
	f.Fuzz(func(t *testing.T, att []byte) {
		c, err := Verify(att, ak, nonce, Options{})
		if err == nil && c == nil {
			t.Fatal("neither claims nor error")
		}
		if err != nil && !slices.ContainsFunc(sentinels, func(s error) bool { return errors.Is(err, s) }) {
			t.Fatalf("error %v wraps no sentinel", err)
		}
	})
}

// FuzzVerifyEventLog fuzzes only the event log inside a valid attestation,
// where random protobuf mutations would rarely reach.
func FuzzVerifyEventLog(f *testing.F) {
	log := eventLogOf(f, seabiosAttestation)
	f.Add(log)
	f.Add(eventLogOf(f, ovmfAttestation))
	f.Add(ubuntu2404Log)
	f.Add(debian10Log)
	ak, nonce := recordedAK(f, seabiosAttestation), recordedNonce()
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := Verify(withEventLog(t, seabiosAttestation, b), ak, nonce, Options{})
		if err == nil && c == nil {
			t.Fatal("neither claims nor error")
		}
		if err != nil && !errors.Is(err, ErrEventLog) && !errors.Is(err, ErrMalformed) {
			t.Fatalf("error %v, want %v or %v", err, ErrEventLog, ErrMalformed)
		}
	})
}

func BenchmarkVerify(b *testing.B) {
	ak, nonce := recordedAK(b, ovmfAttestation), recordedNonce()
	for b.Loop() {
		if _, err := Verify(ovmfAttestation, ak, nonce, Options{}); err != nil {
			b.Fatal(err)
		}
	}
}

func TestIsResetValue(t *testing.T) {
	zero, ones := make([]byte, 32), bytes.Repeat([]byte{0xff}, 32)
	locality3 := append(make([]byte, 31), 3)
	locality5 := append(make([]byte, 31), 5)
	tests := map[string]struct {
		idx  int
		v    []byte
		want bool
	}{
		"PCR 8 zeros":          {8, zero, true},
		"PCR 8 extended":       {8, sha256Of("x"), false},
		"PCR 8 ones":           {8, ones, false},
		"PCR 17 ones":          {17, ones, true},
		"PCR 17 zeros":         {17, zero, false},
		"PCR 0 locality 3":     {0, locality3, true},
		"PCR 0 bad locality 5": {0, locality5, false},
		"PCR 4 locality 3":     {4, locality3, false},
		"empty value":          {9, nil, false},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := isResetValue(tc.idx, tc.v); got != tc.want {
				t.Errorf("isResetValue(%d, %x) = %v, want %v", tc.idx, tc.v, got, tc.want)
			}
		})
	}
}

func sha256Of(s string) []byte {
	h := sha256.Sum256([]byte(s))
	return h[:]
}
