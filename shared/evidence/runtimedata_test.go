package evidence

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
)

var (
	keysOnce sync.Once
	testRSA  *rsa.PrivateKey
	testEC   *ecdsa.PrivateKey
)

// testKeys returns an RSA-2048 runtime key and a P-256 AK, made once per
// test binary.
func testKeys(t testing.TB) (*rsa.PrivateKey, *ecdsa.PrivateKey) {
	t.Helper()
	keysOnce.Do(func() {
		var err error
		if testRSA, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
		if testEC, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			panic(err)
		}
	})
	return testRSA, testEC
}

func testNonce(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i)
	}
	return b
}

func TestRuntimeDataRoundTrip(t *testing.T) {
	rk, ak := testKeys(t)
	workload := json.RawMessage(`{ "z": [1.0, "<x>", {"b": true, "a": null}], "a": -0 }`)
	r, err := NewRuntimeData(testNonce(32), &ak.PublicKey, &rk.PublicKey, workload)
	if err != nil {
		t.Fatalf("NewRuntimeData: %v", err)
	}
	b, err := r.Marshal()
	if err != nil {
		t.Fatalf("Marshal: %v", err)
	}
	if !strings.HasPrefix(string(b), `{"ak":{"crv":"P-256","kty":"EC","x":"`) {
		t.Errorf("Marshal = %s, want sorted keys and a canonical EC JWK first", b)
	}
	if !strings.HasSuffix(string(b), `,"workload":{"a":0,"z":[1,"<x>",{"a":null,"b":true}]}}`) {
		t.Errorf("Marshal = %s, want the canonical workload last", b)
	}
	got, err := ParseRuntimeData(b)
	if err != nil {
		t.Fatalf("ParseRuntimeData: %v", err)
	}
	if !bytes.Equal(got.Nonce, r.Nonce) || !bytes.Equal(got.AK, r.AK) || !bytes.Equal(got.RuntimeKey, r.RuntimeKey) {
		t.Errorf("ParseRuntimeData = %+v, want %+v", got, r)
	}
	again, err := got.Marshal()
	if err != nil || !bytes.Equal(again, b) {
		t.Errorf("re-Marshal = %s, %v; want %s", again, err, b)
	}
	pub, err := got.AKPublic()
	if err != nil {
		t.Fatalf("AKPublic: %v", err)
	}
	if ecPub, ok := pub.(*ecdsa.PublicKey); !ok || !ecPub.Equal(&ak.PublicKey) {
		t.Errorf("AKPublic = %T %v, want the AK", pub, pub)
	}
	key, err := got.RuntimeKeyJWK()
	if err != nil {
		t.Fatalf("RuntimeKeyJWK: %v", err)
	}
	var rsaPub rsa.PublicKey
	if err := exportKey(key, &rsaPub); err != nil || !rsaPub.Equal(&rk.PublicKey) {
		t.Errorf("RuntimeKeyJWK = %v (%v), want the runtime key", key, err)
	}
}

func TestRuntimeDataNoWorkload(t *testing.T) {
	rk, ak := testKeys(t)
	r, err := NewRuntimeData(testNonce(64), &ak.PublicKey, &rk.PublicKey, nil)
	if err != nil {
		t.Fatalf("NewRuntimeData: %v", err)
	}
	b, err := r.Marshal()
	if err != nil {
		t.Fatalf("Marshal: %v", err)
	}
	if strings.Contains(string(b), "workload") {
		t.Errorf("Marshal = %s, want no workload", b)
	}
	if _, err := ParseRuntimeData(b); err != nil {
		t.Errorf("ParseRuntimeData: %v", err)
	}
}

func TestNewRuntimeDataErrors(t *testing.T) {
	rk, ak := testKeys(t)
	tests := map[string]struct {
		nonce      []byte
		ak, rk     any
		workload   json.RawMessage
		wantErrSub string
	}{
		"private AK":          {nonce: testNonce(32), ak: ak, rk: &rk.PublicKey, wantErrSub: "private key"},
		"private runtime key": {nonce: testNonce(32), ak: &ak.PublicKey, rk: rk, wantErrSub: "private key"},
		"symmetric key":       {nonce: testNonce(32), ak: []byte("secret"), rk: &rk.PublicKey, wantErrSub: "AK"},
		"nil key":             {nonce: testNonce(32), ak: nil, rk: &rk.PublicKey, wantErrSub: "AK"},
		"short nonce":         {nonce: testNonce(31), ak: &ak.PublicKey, rk: &rk.PublicKey, wantErrSub: "nonce"},
		"long nonce":          {nonce: testNonce(65), ak: &ak.PublicKey, rk: &rk.PublicKey, wantErrSub: "nonce"},
		"workload array":      {nonce: testNonce(32), ak: &ak.PublicKey, rk: &rk.PublicKey, workload: json.RawMessage(`[1]`), wantErrSub: "workload"},
		"workload invalid":    {nonce: testNonce(32), ak: &ak.PublicKey, rk: &rk.PublicKey, workload: json.RawMessage(`{`), wantErrSub: "workload"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := NewRuntimeData(tt.nonce, tt.ak, tt.rk, tt.workload)
			if err == nil || !strings.Contains(err.Error(), tt.wantErrSub) {
				t.Fatalf("NewRuntimeData() error = %v, want one mentioning %q", err, tt.wantErrSub)
			}
		})
	}
}

func TestParseRuntimeDataErrors(t *testing.T) {
	rk, ak := testKeys(t)
	r, err := NewRuntimeData(testNonce(32), &ak.PublicKey, &rk.PublicKey, json.RawMessage(`{"app":"db"}`))
	if err != nil {
		t.Fatal(err)
	}
	good, err := r.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseRuntimeData(good); err != nil {
		t.Fatalf("ParseRuntimeData(good): %v", err)
	}
	akJSON, rkJSON := string(r.AK), string(r.RuntimeKey)
	nonce := `"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"`
	build := func(ak, nonce, rk, rest string) []byte {
		return []byte(`{"ak":` + ak + `,"nonce":` + nonce + `,"runtime_key":` + rk + rest + `}`)
	}
	if got := build(akJSON, nonce, rkJSON, `,"workload":{"app":"db"}`); !bytes.Equal(got, good) {
		t.Fatalf("test builder = %s, want %s", got, good)
	}
	// A private EC JWK: the public JWK plus "d".
	akD, err := ak.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	privAKBytes, err := canonicalObject([]byte(strings.Replace(akJSON, `"crv"`, `"d":"`+b64(akD)+`","crv"`, 1)))
	if err != nil {
		t.Fatal(err)
	}
	privAK := string(privAKBytes)
	tests := map[string]struct {
		in      []byte
		wantErr error
	}{
		"empty":             {in: nil, wantErr: ErrMalformed},
		"not JSON":          {in: []byte("nonce"), wantErr: ErrMalformed},
		"array":             {in: []byte("[]"), wantErr: ErrMalformed},
		"unknown field":     {in: build(akJSON, nonce, rkJSON, `,"extra":{}`), wantErr: ErrMalformed},
		"missing nonce":     {in: []byte(`{"ak":` + akJSON + `,"runtime_key":` + rkJSON + `}`), wantErr: ErrMalformed},
		"missing ak":        {in: []byte(`{"nonce":` + nonce + `,"runtime_key":` + rkJSON + `}`), wantErr: ErrMalformed},
		"missing rk":        {in: []byte(`{"ak":` + akJSON + `,"nonce":` + nonce + `}`), wantErr: ErrMalformed},
		"null ak":           {in: build("null", nonce, rkJSON, ""), wantErr: ErrMalformed},
		"string ak":         {in: build(`"x"`, nonce, rkJSON, ""), wantErr: ErrMalformed},
		"private ak":        {in: build(privAK, nonce, rkJSON, ""), wantErr: ErrMalformed},
		"symmetric ak":      {in: build(`{"k":"c2VjcmV0","kty":"oct"}`, nonce, rkJSON, ""), wantErr: ErrMalformed},
		"bad ak":            {in: build(`{"crv":"P-256","kty":"EC","x":"AA","y":"AA"}`, nonce, rkJSON, ""), wantErr: ErrMalformed},
		"short nonce":       {in: build(akJSON, `"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHg"`, rkJSON, ""), wantErr: ErrMalformed},
		"long nonce":        {in: build(akJSON, `"`+b64(testNonce(65))+`"`, rkJSON, ""), wantErr: ErrMalformed},
		"padded nonce":      {in: build(akJSON, `"`+b64(testNonce(32))+`="`, rkJSON, ""), wantErr: ErrMalformed},
		"std base64 nonce":  {in: build(akJSON, `"`+strings.Repeat("+/", 22)+`"`, rkJSON, ""), wantErr: ErrMalformed},
		"number nonce":      {in: build(akJSON, `1`, rkJSON, ""), wantErr: ErrMalformed},
		"null nonce":        {in: build(akJSON, `null`, rkJSON, ""), wantErr: ErrMalformed},
		"workload array":    {in: build(akJSON, nonce, rkJSON, `,"workload":[]`), wantErr: ErrMalformed},
		"workload null":     {in: build(akJSON, nonce, rkJSON, `,"workload":null`), wantErr: ErrMalformed},
		"whitespace":        {in: append([]byte(" "), good...), wantErr: ErrMalformed},
		"trailing newline":  {in: append(bytes.Clone(good), '\n'), wantErr: ErrMalformed},
		"trailing data":     {in: append(bytes.Clone(good), "{}"...), wantErr: ErrMalformed},
		"unsorted keys":     {in: []byte(`{"nonce":` + nonce + `,"ak":` + akJSON + `,"runtime_key":` + rkJSON + `}`), wantErr: ErrMalformed},
		"unsorted workload": {in: build(akJSON, nonce, rkJSON, `,"workload":{"b":1,"a":1}`), wantErr: ErrMalformed},
		"float workload":    {in: build(akJSON, nonce, rkJSON, `,"workload":{"a":1.0}`), wantErr: ErrMalformed},
		"escaped workload":  {in: build(akJSON, nonce, rkJSON, `,"workload":{"a":"\u0041"}`), wantErr: ErrMalformed},
		"duplicate key":     {in: build(akJSON, nonce, rkJSON, `,"workload":{"a":1,"a":1}`), wantErr: ErrMalformed},
		"upper-case name":   {in: []byte(`{"AK":` + akJSON + `,"nonce":` + nonce + `,"runtime_key":` + rkJSON + `}`), wantErr: ErrMalformed},
		"unsorted ak":       {in: build(`{"kty":"EC","crv":"P-256"`+akJSON[len(`{"crv":"P-256","kty":"EC"`):], nonce, rkJSON, ""), wantErr: ErrMalformed},
		"huge number":       {in: build(akJSON, nonce, rkJSON, `,"workload":{"a":1e999}`), wantErr: ErrMalformed},
		"too large":         {in: build(akJSON, nonce, rkJSON, `,"workload":{"a":"`+strings.Repeat("x", MaxRuntimeDataSize)+`"}`), wantErr: ErrTooLarge},
		"invalid UTF-8":     {in: build(akJSON, nonce, rkJSON, ",\"workload\":{\"a\":\"\xff\"}"), wantErr: ErrMalformed},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := ParseRuntimeData(tt.in)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("ParseRuntimeData() = %v, %v; want error %v", got, err, tt.wantErr)
			}
			if !errors.Is(err, ErrMalformed) {
				t.Errorf("ParseRuntimeData() error %v does not match ErrMalformed", err)
			}
		})
	}
}

func TestHashes(t *testing.T) {
	in := []byte("abc")
	rd := ReportData(in)
	if got, want := hex.EncodeToString(rd[:]), "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"; got != want {
		t.Errorf("ReportData(abc) = %s, want %s", got, want)
	}
	if rd != sha512.Sum512(in) {
		t.Error("ReportData is not SHA-512")
	}
	tn := TPMNonce(in)
	if got, want := hex.EncodeToString(tn[:]), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"; got != want {
		t.Errorf("TPMNonce(abc) = %s, want %s", got, want)
	}
	if tn != sha256.Sum256(in) {
		t.Error("TPMNonce is not SHA-256")
	}
}

func TestCanonicalObjectIdempotent(t *testing.T) {
	for _, in := range []string{
		`{"a":1e21,"b":1e20,"c":5e18,"d":1e-7,"e":-0.0,"f":0.5,"g":123456789012345678901234567890}`,
		`{"\u2028":"\u003c&>","nested":{"z":[],"y":{}}}`,
	} {
		c1, err := canonicalObject([]byte(in))
		if err != nil {
			t.Fatalf("canonicalObject(%s): %v", in, err)
		}
		c2, err := canonicalObject(c1)
		if err != nil || !bytes.Equal(c1, c2) {
			t.Errorf("canonicalObject not idempotent: %s -> %s -> %s (%v)", in, c1, c2, err)
		}
	}
}
