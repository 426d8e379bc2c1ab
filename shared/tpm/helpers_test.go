package tpm

import (
	"crypto"
	"crypto/sha256"
	_ "embed"
	"encoding/binary"
	"io"
	"testing"

	pb "github.com/google/go-tpm-tools/proto/attest"
	"github.com/google/go-tpm-tools/simulator"
	"github.com/google/go-tpm/legacy/tpm2"
	"google.golang.org/protobuf/proto"

	"github.com/confidant-cvm/confidant/shared/tpm/tpmtest"
)

// Tests in this package never call t.Parallel: the go-tpm-tools simulator is
// one per process, and simulator.Get blocks until the previous one is
// closed.

// Event logs recorded on GCE by the go-tpm-tools authors
// (go-tpm-tools v0.4.10 internal/test/eventlogs, Apache 2.0).
var (
	//go:embed testdata/ubuntu-2404-amd-sevsnp.bin
	ubuntu2404Log []byte
	//go:embed testdata/cos-101-amd-sev.bin
	cos101Log []byte
	//go:embed testdata/debian-10.bin
	debian10Log []byte

	rhel8Log = tpmtest.RHEL8UEFI()
)

// Evidence recorded by testdata/record as the /init of a QEMU guest (cloud
// kernel 6.1, swtpm 0.7, TCG) with SeaBIOS and with OVMF (no Secure Boot),
// each through direct kernel boot; see testdata/README.md.
var (
	//go:embed testdata/qemu-seabios-swtpm.pb
	seabiosAttestation []byte
	//go:embed testdata/qemu-ovmf-swtpm.pb
	ovmfAttestation []byte
)

// recordedNonce is the extraData the recorded attestations were made with.
func recordedNonce() []byte {
	n := sha256.Sum256([]byte("confidant recorded evidence"))
	return n[:]
}

// recordedAK returns the AK of a recorded attestation, read from its AK
// public area (there is no runtime data to take it from).
func recordedAK(t testing.TB, att []byte) crypto.PublicKey {
	t.Helper()
	var a pb.Attestation
	if err := proto.Unmarshal(att, &a); err != nil {
		t.Fatalf("decoding recorded attestation: %v", err)
	}
	pub, err := tpm2.DecodePublic(a.GetAkPub())
	if err != nil {
		t.Fatalf("decoding recorded AK: %v", err)
	}
	k, err := pub.Key()
	if err != nil {
		t.Fatalf("decoding recorded AK: %v", err)
	}
	return k
}

// newSimulator starts the TPM simulator and closes it when the test ends.
func newSimulator(t testing.TB) io.ReadWriter {
	t.Helper()
	sim, err := simulator.Get()
	if err != nil {
		t.Fatalf("starting TPM simulator: %v", err)
	}
	t.Cleanup(func() {
		if err := sim.Close(); err != nil {
			t.Errorf("closing TPM simulator: %v", err)
		}
	})
	return sim
}

// extendLog extends log into the TPM (tpmtest.ExtendLog), as go-tpm-tools'
// own tests give the simulator a boot history.
func extendLog(t testing.TB, rw io.ReadWriter, log []byte) {
	t.Helper()
	if err := tpmtest.ExtendLog(rw, log); err != nil {
		t.Fatal(err)
	}
}

// fixture is a fresh attestation from the simulator.
type fixture struct {
	att   []byte
	ak    crypto.PublicKey
	nonce []byte
	pcrs  map[int][]byte // sha256 PCR values read from the TPM
}

// attestWithLog boots the simulator through log and attests with it.
func attestWithLog(t testing.TB, log []byte) fixture {
	t.Helper()
	rw := newSimulator(t)
	extendLog(t, rw, log)
	a, err := NewAttester(rw)
	if err != nil {
		t.Fatalf("NewAttester: %v", err)
	}
	defer a.Close()
	nonce := sha256.Sum256([]byte(t.Name()))
	att, err := a.Attest(nonce[:], log)
	if err != nil {
		t.Fatalf("Attest: %v", err)
	}
	sel := tpm2.PCRSelection{Hash: tpm2.AlgSHA256, PCRs: []int{0, 1, 2, 3, 4, 5, 6, 7}}
	vals, err := tpm2.ReadPCRs(rw, sel)
	if err != nil {
		t.Fatalf("reading PCRs: %v", err)
	}
	return fixture{att: att, ak: a.AKPublic(), nonce: nonce[:], pcrs: vals}
}

// logEvent locates one event of a crypto-agile event log.
type logEvent struct {
	start, end int // the whole event
	typeOff    int
	pcr        uint32
	typ        uint32
	sha256Off  int // -1 when the event has no SHA-256 digest
	dataOff    int
}

// walkLog splits a crypto-agile log into its events (the first, the Spec ID
// event, included). It trusts its input: test logs only.
func walkLog(t testing.TB, log []byte) []logEvent {
	t.Helper()
	le := binary.LittleEndian
	// Spec ID event: SHA-1 format header, then the algorithm list.
	size := int(le.Uint32(log[28:]))
	spec := log[32 : 32+size]
	n := int(le.Uint32(spec[24:]))
	algSize := map[uint16]int{}
	for i := range n {
		algSize[le.Uint16(spec[28+4*i:])] = int(le.Uint16(spec[30+4*i:]))
	}
	events := []logEvent{{start: 0, end: 32 + size, typeOff: 4, pcr: le.Uint32(log), typ: le.Uint32(log[4:]), sha256Off: -1, dataOff: 32}}
	for off := 32 + size; off < len(log); {
		ev := logEvent{start: off, typeOff: off + 4, pcr: le.Uint32(log[off:]), typ: le.Uint32(log[off+4:]), sha256Off: -1}
		count := int(le.Uint32(log[off+8:]))
		p := off + 12
		for range count {
			alg := le.Uint16(log[p:])
			if alg == uint16(tpm2.AlgSHA256) {
				ev.sha256Off = p + 2
			}
			p += 2 + algSize[alg]
		}
		ev.dataOff = p + 4
		ev.end = ev.dataOff + int(le.Uint32(log[p:]))
		events = append(events, ev)
		off = ev.end
	}
	if len(events) < 2 {
		t.Fatal("test event log has no events")
	}
	return events
}

// withEventLog returns att with its event log replaced.
func withEventLog(t testing.TB, att []byte, log []byte) []byte {
	t.Helper()
	return mutate(t, att, func(a *pb.Attestation) { a.EventLog = log })
}

// mutate decodes att, applies f and encodes it again.
func mutate(t testing.TB, att []byte, f func(*pb.Attestation)) []byte {
	t.Helper()
	var a pb.Attestation
	if err := proto.Unmarshal(att, &a); err != nil {
		t.Fatalf("decoding attestation: %v", err)
	}
	f(&a)
	out, err := proto.Marshal(&a)
	if err != nil {
		t.Fatalf("encoding attestation: %v", err)
	}
	return out
}

// eventLogOf returns the event log inside att.
func eventLogOf(t testing.TB, att []byte) []byte {
	t.Helper()
	var a pb.Attestation
	if err := proto.Unmarshal(att, &a); err != nil {
		t.Fatalf("decoding attestation: %v", err)
	}
	return a.GetEventLog()
}
