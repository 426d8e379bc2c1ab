package evidence

import (
	"bytes"
	"encoding/json"
	"os"
	"testing"
)

func FuzzDecode(f *testing.F) {
	if b, err := testEnvelope().Encode(); err == nil {
		f.Add(b)
	}
	if b, err := os.ReadFile("testdata/envelope.example.json"); err == nil {
		f.Add(b)
	}
	f.Add([]byte(`{"version":1,"tee":"tdx","runtime_data":"AA","report":"AA"}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, in []byte) {
		e, err := Decode(in)
		if err != nil {
			return
		}
		out, err := e.Encode()
		if err != nil {
			t.Fatalf("Encode after Decode: %v", err)
		}
		again, err := Decode(out)
		if err != nil {
			t.Fatalf("Decode(Encode(Decode(in))): %v", err)
		}
		if again.TEE != e.TEE || !bytes.Equal(again.Report, e.Report) || !bytes.Equal(again.RuntimeData, e.RuntimeData) ||
			!bytes.Equal(again.CertTable, e.CertTable) || !bytes.Equal(again.TPM, e.TPM) {
			t.Fatalf("round trip changed the envelope: %+v != %+v", again, e)
		}
	})
}

func FuzzParseRuntimeData(f *testing.F) {
	rk, ak := testKeys(f)
	r, err := NewRuntimeData(testNonce(32), &ak.PublicKey, &rk.PublicKey, json.RawMessage(`{"a":[1,2.5,"x"],"b":{"c":null}}`))
	if err != nil {
		f.Fatal(err)
	}
	b, err := r.Marshal()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add([]byte(`{"ak":{},"nonce":"","runtime_key":{}}`))
	f.Fuzz(func(t *testing.T, in []byte) {
		r, err := ParseRuntimeData(in)
		if err != nil {
			return
		}
		out, err := r.Marshal()
		if err != nil {
			t.Fatalf("Marshal after Parse: %v", err)
		}
		if !bytes.Equal(out, in) {
			t.Fatalf("accepted non-canonical input:\n in: %s\nout: %s", in, out)
		}
		if _, err := r.AKPublic(); err != nil {
			t.Fatalf("AKPublic after Parse: %v", err)
		}
		if _, err := r.RuntimeKeyJWK(); err != nil {
			t.Fatalf("RuntimeKeyJWK after Parse: %v", err)
		}
	})
}

func FuzzCanonicalObject(f *testing.F) {
	f.Add([]byte(`{"a":1e21,"b":[1.0,-0,"\u003c"],"c":{"z":1,"y":2}}`))
	f.Fuzz(func(t *testing.T, in []byte) {
		c, err := canonicalObject(in)
		if err != nil {
			return
		}
		again, err := canonicalObject(c)
		if err != nil || !bytes.Equal(again, c) {
			t.Fatalf("canonical form not stable: %s -> %s -> %s (%v)", in, c, again, err)
		}
	})
}
