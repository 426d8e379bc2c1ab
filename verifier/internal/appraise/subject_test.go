//go:build cgo

package appraise_test

import (
	"context"
	"encoding/hex"
	"path/filepath"
	"strings"
	"testing"

	"github.com/confidant-cvm/confidant/shared/evidence"
	"github.com/confidant-cvm/confidant/verifier/internal/testguest"
	"github.com/confidant-cvm/confidant/verifier/internal/token"
)

// TestSubjectIdentifiesTheVM: two VMs of one image (one measurement, the
// HOST_DATA hostd gives each) get different subs, each naming the image
// and the VM, with HOST_DATA verified in the signed report; evidence without
// HOST_DATA names the image only.
func TestSubjectIdentifiesTheVM(t *testing.T) {
	dir := t.TempDir()
	g, err := testguest.New(filepath.Join(dir, "signer"))
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	m := testguest.Measurement()
	meas := hex.EncodeToString(m[:])
	a := simAppraiser(t, g, dir, "one-image")
	ctx := context.Background()
	appraiseWith := func(hostData [32]byte) *token.Claims {
		t.Helper()
		body, err := g.EvidenceJSON(make([]byte, evidence.MinNonceSize), testguest.Options{HostData: hostData})
		if err != nil {
			t.Fatal(err)
		}
		env, err := evidence.Decode(body)
		if err != nil {
			t.Fatal(err)
		}
		rd, err := evidence.ParseRuntimeData(env.RuntimeData)
		if err != nil {
			t.Fatal(err)
		}
		res, err := a.Appraise(ctx, env, rd, []string{"disk"})
		if err != nil {
			t.Fatalf("appraising: %v", err)
		}
		return res.Claims
	}
	var vm1, vm2 [32]byte
	copy(vm1[:], "hostd identity of vm one")
	copy(vm2[:], "hostd identity of vm two")
	c1, c2 := appraiseWith(vm1), appraiseWith(vm2)
	want1 := "sim-sev-snp:" + meas + ":" + hex.EncodeToString(vm1[:])
	want2 := "sim-sev-snp:" + meas + ":" + hex.EncodeToString(vm2[:])
	if c1.Subject != want1 || c2.Subject != want2 {
		t.Fatalf("subs %q and %q, want %q and %q", c1.Subject, c2.Subject, want1, want2)
	}
	for _, c := range []*token.Claims{c1, c2} {
		if c.TEE["host_data"] != strings.Split(c.Subject, ":")[2] || c.TEE["measurement"] != meas {
			t.Fatalf("tee claims host_data %v measurement %v do not match sub %s", c.TEE["host_data"], c.TEE["measurement"], c.Subject)
		}
	}
	if again := appraiseWith(vm1); again.Subject != c1.Subject {
		t.Fatalf("sub of one VM not stable: %q then %q", c1.Subject, again.Subject)
	}
	if c := appraiseWith([32]byte{}); c.Subject != "sim-sev-snp:"+meas+":"+strings.Repeat("0", 64) {
		t.Fatalf("sub without HOST_DATA = %q", c.Subject)
	}
}
