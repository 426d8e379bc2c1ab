package loadgen

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"

	"github.com/google/go-eventlog/register"
	"github.com/google/go-eventlog/tcg"
	pb "github.com/google/go-tpm-tools/proto/attest"
	tpmpb "github.com/google/go-tpm-tools/proto/tpm"
	"github.com/google/go-tpm/tpm2"
	"google.golang.org/protobuf/proto"

	"github.com/confidant-cvm/confidant/shared/tpm/tpmtest"
)

// EventLog is the TCG event log every simulated agent sends: a RHEL 8 UEFI
// boot with Secure Boot on (tpmtest.RHEL8UEFI), the same log
// verifier/internal/testguest extends into the TPM simulator.
var EventLog = tpmtest.RHEL8UEFI()

// numPCRs is the number of PCRs of a PC Client TPM; every quote covers all
// of them, as go-tpm-tools' client.Key.Attest does.
const numPCRs = 24

// Image is the boot history shared by all simulated agents: the event log
// and the PCR values it replays to, per bank.
type Image struct {
	// EventLog is the raw TCG event log.
	EventLog []byte
	// Banks are the PCR banks the log records, in the log's order.
	Banks []Bank
}

// Bank is one PCR bank of an Image.
type Bank struct {
	// Alg is the bank's hash algorithm.
	Alg tpm2.TPMAlgID
	// Name is "sha1", "sha256" or "sha384".
	Name string
	// PCRs are the values after the boot, index 0 to 23.
	PCRs [numPCRs][]byte
	// Logged reports which PCRs the log extends.
	Logged [numPCRs]bool
	// digest is the SHA-256 of PCRs 0-23 concatenated: the quoted digest
	// (TPM2_Quote hashes the PCR values with the AK's scheme hash).
	digest []byte
}

// bankNames maps the event log's algorithms to bank names and TPM IDs.
var bankNames = map[register.HashAlg]struct {
	name string
	alg  tpm2.TPMAlgID
}{
	register.HashSHA1:   {"sha1", tpm2.TPMAlgSHA1},
	register.HashSHA256: {"sha256", tpm2.TPMAlgSHA256},
	register.HashSHA384: {"sha384", tpm2.TPMAlgSHA384},
}

// NewImage replays eventLog in software from reset PCR values (zeros; all
// ones for PCRs 17-22; PCR 0 starts at the startup locality when the log
// records one), exactly as a TPM would have been extended by the firmware
// that wrote it.
func NewImage(eventLog []byte) (*Image, error) {
	el, err := parseEventLog(eventLog)
	if err != nil {
		return nil, err
	}
	img := &Image{EventLog: bytes.Clone(eventLog)}
	for _, alg := range el.Algs {
		bn, ok := bankNames[alg]
		if !ok {
			continue
		}
		h := alg.CryptoHash()
		b := Bank{Alg: bn.alg, Name: bn.name}
		for i := range b.PCRs {
			b.PCRs[i] = make([]byte, h.Size())
			if i >= 17 && i <= 22 {
				for j := range b.PCRs[i] {
					b.PCRs[i][j] = 0xff
				}
			}
		}
		for _, e := range el.Events(alg) {
			if e.Index < 0 || e.Index >= numPCRs {
				return nil, fmt.Errorf("replaying event log: event in PCR %d", e.Index)
			}
			if e.Type == tcg.NoAction {
				if loc, ok := startupLocality(e); ok && e.Index == 0 {
					b.PCRs[0][len(b.PCRs[0])-1] = loc
				}
				continue
			}
			if len(e.Digest) != h.Size() {
				return nil, fmt.Errorf("replaying event log: %s digest of %d bytes", bn.name, len(e.Digest))
			}
			d := h.New()
			d.Write(b.PCRs[e.Index])
			d.Write(e.Digest)
			b.PCRs[e.Index] = d.Sum(nil)
			b.Logged[e.Index] = true
		}
		d := crypto.SHA256.New()
		for _, v := range b.PCRs {
			d.Write(v)
		}
		b.digest = d.Sum(nil)
		img.Banks = append(img.Banks, b)
	}
	if len(img.Banks) == 0 {
		return nil, errors.New("replaying event log: no SHA-1, SHA-256 or SHA-384 bank")
	}
	return img, nil
}

// parseEventLog parses a log, turning a parser panic into an error.
func parseEventLog(log []byte) (el *tcg.EventLog, err error) {
	defer func() {
		if r := recover(); r != nil {
			el, err = nil, fmt.Errorf("parsing event log: panic: %v", r)
		}
	}()
	el, err = tcg.ParseEventLog(log, tcg.ParseOpts{})
	if err != nil {
		return nil, fmt.Errorf("parsing event log: %w", err)
	}
	return el, nil
}

// startupLocality reads an EV_NO_ACTION StartupLocality event.
func startupLocality(e tcg.Event) (byte, bool) {
	const sig = "StartupLocality\x00"
	if len(e.Data) == len(sig)+1 && string(e.Data[:len(sig)]) == sig {
		return e.Data[len(sig)], true
	}
	return 0, false
}

// Bank returns the bank named name ("sha256"), or nil.
func (img *Image) Bank(name string) *Bank {
	for i := range img.Banks {
		if img.Banks[i].Name == name {
			return &img.Banks[i]
		}
	}
	return nil
}

// HexPCRs returns the logged PCRs of b as index → lower-case hex, the form
// of the reference values file and of the token's tpm.pcrs claim.
func (b *Bank) HexPCRs() map[string]string {
	out := map[string]string{}
	for i, v := range b.PCRs {
		if b.Logged[i] {
			out[strconv.Itoa(i)] = hex.EncodeToString(v)
		}
	}
	return out
}

// softTPM is one simulated agent's vTPM: an AK held in software whose
// public area says what a TPM-resident AK would (fixedTPM, restricted,
// signing), quoting the Image's PCRs.
type softTPM struct {
	img  *Image
	ak   *ecdsa.PrivateKey
	pub  []byte // TPMT_PUBLIC of the AK
	qn   []byte // qualified name of the AK
	pcrs []*tpmpb.PCRs
	// clock state, reported in TPMS_CLOCK_INFO.
	resetCount, restartCount uint32
	firmware                 uint64
	clock                    uint64
}

// akPublic returns the public area of a P-256 ECDSA/SHA-256 AK with the
// attributes of the agent's AK (shared/tpm.AKTemplate): fixedTPM,
// fixedParent, sensitiveDataOrigin, userWithAuth, noDA, restricted, sign.
func akPublic(pub *ecdsa.PublicKey) (tpm2.TPMTPublic, error) {
	ecdhPub, err := pub.ECDH()
	if err != nil {
		return tpm2.TPMTPublic{}, fmt.Errorf("encoding AK public area: %w", err)
	}
	raw := ecdhPub.Bytes() // 0x04 || X || Y
	if len(raw) != 65 || raw[0] != 4 {
		return tpm2.TPMTPublic{}, errors.New("encoding AK public area: not an uncompressed P-256 point")
	}
	return tpm2.TPMTPublic{
		Type:    tpm2.TPMAlgECC,
		NameAlg: tpm2.TPMAlgSHA256,
		ObjectAttributes: tpm2.TPMAObject{
			FixedTPM:            true,
			FixedParent:         true,
			SensitiveDataOrigin: true,
			UserWithAuth:        true,
			NoDA:                true,
			Restricted:          true,
			SignEncrypt:         true,
		},
		Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{
			Symmetric: tpm2.TPMTSymDefObject{Algorithm: tpm2.TPMAlgNull},
			Scheme: tpm2.TPMTECCScheme{
				Scheme:  tpm2.TPMAlgECDSA,
				Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgECDSA, &tpm2.TPMSSigSchemeECDSA{HashAlg: tpm2.TPMAlgSHA256}),
			},
			CurveID: tpm2.TPMECCNistP256,
			KDF:     tpm2.TPMTKDFScheme{Scheme: tpm2.TPMAlgNull},
		}),
		Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{
			X: tpm2.TPM2BECCParameter{Buffer: bytes.Clone(raw[1:33])},
			Y: tpm2.TPM2BECCParameter{Buffer: bytes.Clone(raw[33:65])},
		}),
	}, nil
}

// newSoftTPM makes a fresh AK and precomputes everything a quote needs
// except extraData and the signature.
func newSoftTPM(img *Image) (*softTPM, error) {
	ak, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating AK: %w", err)
	}
	pub, err := akPublic(&ak.PublicKey)
	if err != nil {
		return nil, err
	}
	name, err := tpm2.ObjectName(&pub)
	if err != nil {
		return nil, fmt.Errorf("computing AK name: %w", err)
	}
	// A primary key's qualified name is H(parent's qualified name || name);
	// the parent is the owner hierarchy, whose qualified name is its handle.
	h := crypto.SHA256.New()
	h.Write(tpm2.PrimaryHandleName(tpm2.TPMRHOwner))
	h.Write(name.Buffer)
	qn := binary.BigEndian.AppendUint16(nil, uint16(tpm2.TPMAlgSHA256))
	qn = h.Sum(qn)

	var counters [16]byte
	if _, err := rand.Read(counters[:]); err != nil {
		return nil, fmt.Errorf("generating TPM clock values: %w", err)
	}
	t := &softTPM{
		img: img, ak: ak, pub: tpm2.Marshal(&pub), qn: qn,
		// An owner-hierarchy AK sees obfuscated reset and restart counts
		// and firmware version: random-looking, fixed per TPM.
		resetCount:   binary.BigEndian.Uint32(counters[0:]),
		restartCount: binary.BigEndian.Uint32(counters[4:]),
		firmware:     binary.BigEndian.Uint64(counters[8:]),
	}
	for _, b := range img.Banks {
		p := &tpmpb.PCRs{Hash: tpmpb.HashAlgo(b.Alg), Pcrs: make(map[uint32][]byte, numPCRs)}
		for i, v := range b.PCRs {
			p.Pcrs[uint32(i)] = v
		}
		t.pcrs = append(t.pcrs, p)
	}
	return t, nil
}

// public returns the AK's public key.
func (t *softTPM) public() *ecdsa.PublicKey { return &t.ak.PublicKey }

// quote returns a TPMS_ATTEST quote over all PCRs of bank b with
// extraData, and its TPMT_SIGNATURE (ECDSA, SHA-256) by the AK.
func (t *softTPM) quote(b *Bank, extraData []byte) (quoted, sig []byte, err error) {
	t.clock += 2
	att := tpm2.TPMSAttest{
		Magic:           tpm2.TPMGeneratedValue,
		Type:            tpm2.TPMSTAttestQuote,
		QualifiedSigner: tpm2.TPM2BName{Buffer: t.qn},
		ExtraData:       tpm2.TPM2BData{Buffer: extraData},
		ClockInfo: tpm2.TPMSClockInfo{
			Clock: t.clock, ResetCount: t.resetCount, RestartCount: t.restartCount, Safe: true,
		},
		FirmwareVersion: t.firmware,
		Attested: tpm2.NewTPMUAttest(tpm2.TPMSTAttestQuote, &tpm2.TPMSQuoteInfo{
			PCRSelect: tpm2.TPMLPCRSelection{PCRSelections: []tpm2.TPMSPCRSelection{
				{Hash: b.Alg, PCRSelect: []byte{0xff, 0xff, 0xff}},
			}},
			PCRDigest: tpm2.TPM2BDigest{Buffer: b.digest},
		}),
	}
	quoted = tpm2.Marshal(&att)
	digest := crypto.SHA256.New()
	digest.Write(quoted)
	r, s, err := ecdsa.Sign(rand.Reader, t.ak, digest.Sum(nil))
	if err != nil {
		return nil, nil, fmt.Errorf("signing quote: %w", err)
	}
	signature := tpm2.TPMTSignature{
		SigAlg: tpm2.TPMAlgECDSA,
		Signature: tpm2.NewTPMUSignature(tpm2.TPMAlgECDSA, &tpm2.TPMSSignatureECC{
			Hash:       tpm2.TPMAlgSHA256,
			SignatureR: tpm2.TPM2BECCParameter{Buffer: r.FillBytes(make([]byte, 32))},
			SignatureS: tpm2.TPM2BECCParameter{Buffer: s.FillBytes(make([]byte, 32))},
		}),
	}
	return quoted, tpm2.Marshal(&signature), nil
}

// attest returns the marshalled go-tpm-tools attest.Attestation: the AK
// public area, one quote per bank with its PCR values, and the event log,
// as shared/tpm.Attester produces on a real vTPM.
func (t *softTPM) attest(extraData []byte) ([]byte, error) {
	att := &pb.Attestation{AkPub: t.pub, EventLog: t.img.EventLog}
	for i := range t.img.Banks {
		quoted, sig, err := t.quote(&t.img.Banks[i], extraData)
		if err != nil {
			return nil, err
		}
		att.Quotes = append(att.Quotes, &tpmpb.Quote{Quote: quoted, RawSig: sig, Pcrs: t.pcrs[i]})
	}
	b, err := proto.Marshal(att)
	if err != nil {
		return nil, fmt.Errorf("marshalling attestation: %w", err)
	}
	return b, nil
}
