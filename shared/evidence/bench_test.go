package evidence

import (
	"encoding/json"
	"os"
	"testing"
)

func BenchmarkDecodeExample(b *testing.B) {
	in, err := os.ReadFile("testdata/envelope.example.json")
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := Decode(in); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseRuntimeData(b *testing.B) {
	rk, ak := testKeys(b)
	r, err := NewRuntimeData(testNonce(32), &ak.PublicKey, &rk.PublicKey, json.RawMessage(`{"name":"example"}`))
	if err != nil {
		b.Fatal(err)
	}
	in, err := r.Marshal()
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := ParseRuntimeData(in); err != nil {
			b.Fatal(err)
		}
	}
}
