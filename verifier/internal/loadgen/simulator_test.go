//go:build cgo

package loadgen

import (
	"bytes"
	"crypto/ecdsa"
	"testing"

	pb "github.com/google/go-tpm-tools/proto/attest"
	"github.com/google/go-tpm/tpm2"
	"google.golang.org/protobuf/proto"

	"github.com/confidant-cvm/confidant/verifier/internal/testguest"
)

// TestMatchesTPMSimulator compares the software vTPM with a real one (the
// go-tpm-tools simulator behind testguest, which extends the same event
// log): the AK public area is byte for byte what the TPM made for its own
// key, and every PCR of every bank has the value the TPM computed.
func TestMatchesTPMSimulator(t *testing.T) {
	g, err := testguest.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	env, err := g.Evidence(bytes.Repeat([]byte{1}, 64), testguest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var att pb.Attestation
	if err := proto.Unmarshal(env.TPM, &att); err != nil {
		t.Fatal(err)
	}

	simAK, ok := g.AK().(*ecdsa.PublicKey)
	if !ok {
		t.Fatalf("simulator AK is %T", g.AK())
	}
	pub, err := akPublic(simAK)
	if err != nil {
		t.Fatal(err)
	}
	if got := tpm2.Marshal(&pub); !bytes.Equal(got, att.AkPub) {
		t.Errorf("AK public area\n%x\nwant the TPM's\n%x", got, att.AkPub)
	}

	img := image(t)
	compared := 0
	for _, q := range att.Quotes {
		for _, b := range img.Banks {
			if uint32(b.Alg) != uint32(q.Pcrs.Hash) {
				continue
			}
			compared++
			for i, v := range b.PCRs {
				if want := q.Pcrs.Pcrs[uint32(i)]; !bytes.Equal(v, want) {
					t.Errorf("%s PCR %d = %x, the TPM has %x", b.Name, i, v, want)
				}
			}
		}
	}
	if compared != len(img.Banks) {
		t.Errorf("compared %d banks, want %d", compared, len(img.Banks))
	}
}
