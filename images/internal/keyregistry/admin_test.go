package keyregistry_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/confidant-cvm/confidant/images/internal/keyregistry"
	"github.com/confidant-cvm/confidant/images/internal/keyregistry/admintest"
)

const simPolicy = `package t
result := {"allow": input.tee.kind == "sim-sev-snp", "reasons": []}
`

// TestClientAgainstVerifier: every call against a real confidant-verifier,
// and the error answers callers branch on.
func TestClientAgainstVerifier(t *testing.T) {
	v := admintest.Start(t)
	ctx := context.Background()
	c, err := keyregistry.NewClient(v.Socket, 0)
	if err != nil {
		t.Fatal(err)
	}

	if _, err := c.GetKey(ctx, "disk"); !errors.Is(err, keyregistry.ErrKeyUnknown) {
		t.Fatalf("GetKey of a missing key: %v, want ErrKeyUnknown", err)
	}
	resp, err := c.CreateKey(ctx, keyregistry.CreateKeyRequest{Name: "disk", ReleasePolicy: simPolicy, ReturnKey: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.KeyMaterial) != 32 || resp.Version != 1 || resp.Key.Origin != keyregistry.OriginPlatform || resp.Key.LatestVersion != 1 {
		t.Fatalf("create answered %+v (key of %d bytes)", resp.Key, len(resp.KeyMaterial))
	}
	k, err := c.GetKey(ctx, "disk")
	if err != nil {
		t.Fatal(err)
	}
	if k.ReleasePolicy != simPolicy || k.ReleasePolicySHA256 != resp.Key.ReleasePolicySHA256 || len(k.Versions) != 1 {
		t.Errorf("GetKey = %+v", k)
	}
	// Without return_key no material comes back.
	resp, err = c.CreateKey(ctx, keyregistry.CreateKeyRequest{Name: "kept"})
	if err != nil || resp.KeyMaterial != nil {
		t.Fatalf("create without return_key: %+v, %v", resp, err)
	}

	material := bytes.Repeat([]byte{7}, 32)
	resp, err = c.CreateKey(ctx, keyregistry.CreateKeyRequest{Name: "imported", ReleasePolicy: simPolicy, KeyMaterial: material})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Key.Origin != keyregistry.OriginCustomer || resp.KeyMaterial != nil || resp.Version != 1 {
		t.Errorf("import answered %+v", resp)
	}
	if !bytes.Equal(material, bytes.Repeat([]byte{7}, 32)) {
		t.Error("the caller's key material was changed")
	}

	tests := map[string]struct {
		req     keyregistry.CreateKeyRequest
		wantErr error
	}{
		"name taken":           {req: keyregistry.CreateKeyRequest{Name: "disk"}, wantErr: keyregistry.ErrKeyExists},
		"policy does not load": {req: keyregistry.CreateKeyRequest{Name: "x", ReleasePolicy: "package x\nresult := 1 +"}, wantErr: keyregistry.ErrInvalidPolicy},
		"policy has no result": {req: keyregistry.CreateKeyRequest{Name: "x", ReleasePolicy: "package x\nallow := true\n"}, wantErr: keyregistry.ErrInvalidPolicy},
		"key too short":        {req: keyregistry.CreateKeyRequest{Name: "x", KeyMaterial: []byte("short")}},
		"import and return":    {req: keyregistry.CreateKeyRequest{Name: "x", KeyMaterial: material, ReturnKey: true}},
		"bad name":             {req: keyregistry.CreateKeyRequest{Name: "../x"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := c.CreateKey(ctx, tc.req)
			var answer *keyregistry.Error
			if !errors.As(err, &answer) || answer.Status/100 != 4 {
				t.Fatalf("CreateKey: %v, want a 4xx answer", err)
			}
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Errorf("CreateKey: %v, want %v", err, tc.wantErr)
			}
		})
	}
	if _, err := c.GetKey(ctx, "x"); !errors.Is(err, keyregistry.ErrKeyUnknown) {
		t.Errorf("a refused create left key x: %v", err)
	}

	if err := c.DeleteKey(ctx, "disk"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetKey(ctx, "disk"); !errors.Is(err, keyregistry.ErrKeyUnknown) {
		t.Errorf("GetKey after delete: %v", err)
	}
	if err := c.DeleteKey(ctx, "disk"); !errors.Is(err, keyregistry.ErrKeyUnknown) {
		t.Errorf("deleting a deleted key: %v, want ErrKeyUnknown", err)
	}

	// A verifier that is gone: a transport error, not an answer.
	v.Stop()
	_, err = c.GetKey(ctx, "kept")
	var answer *keyregistry.Error
	if err == nil || errors.As(err, &answer) {
		t.Errorf("GetKey from a stopped verifier: %v", err)
	}
}

// serveUnix serves h on a unix socket until the test ends.
func serveUnix(t *testing.T, h http.HandlerFunc) *keyregistry.Client {
	t.Helper()
	dir, err := os.MkdirTemp("", "adm")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "s")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	c, err := keyregistry.NewClient(sock, 0)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestCreateKeyChecksTheAnswer: a 201 that is not about the key asked for,
// or carries material not asked for, or lacks material asked for, is
// ErrBadAnswer (the verifier made a key: the caller must undo it).
func TestCreateKeyChecksTheAnswer(t *testing.T) {
	const good = `{"key": {"name": "k", "origin": "platform", "latest_version": 1}, "version": 1, "key_material": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"}`
	tests := map[string]struct {
		answer    string
		returnKey bool
		wantErr   error
	}{
		"good":                {answer: good, returnKey: true},
		"other key":           {answer: strings.Replace(good, `"k"`, `"j"`, 1), returnKey: true, wantErr: keyregistry.ErrBadAnswer},
		"no version":          {answer: strings.Replace(good, `"version": 1`, `"version": 0`, 1), returnKey: true, wantErr: keyregistry.ErrBadAnswer},
		"material not asked":  {answer: good, wantErr: keyregistry.ErrBadAnswer},
		"material missing":    {answer: `{"key": {"name": "k"}, "version": 1}`, returnKey: true, wantErr: keyregistry.ErrBadAnswer},
		"material not base64": {answer: strings.Replace(good, "AAEC", "!!!!", 1), returnKey: true, wantErr: keyregistry.ErrBadAnswer},
		"material a number":   {answer: `{"key": {"name": "k"}, "version": 1, "key_material": 5}`, returnKey: true, wantErr: keyregistry.ErrBadAnswer},
		"not JSON":            {answer: `<html>`, returnKey: true, wantErr: keyregistry.ErrBadAnswer},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			c := serveUnix(t, func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(http.StatusCreated)
				w.Write([]byte(tc.answer))
			})
			resp, err := c.CreateKey(context.Background(), keyregistry.CreateKeyRequest{Name: "k", ReturnKey: tc.returnKey})
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("CreateKey: %v, want %v", err, tc.wantErr)
			}
			if err == nil && (len(resp.KeyMaterial) != 32 || resp.KeyMaterial[31] != 31) {
				t.Errorf("key material %x", resp.KeyMaterial)
			}
		})
	}
}

// TestRequestWireFormat: the request bodies are the verifier's
// (shared/api/admin CreateKeyRequest), which refuses unknown fields.
func TestRequestWireFormat(t *testing.T) {
	var got []string
	c := serveUnix(t, func(w http.ResponseWriter, r *http.Request) {
		var b bytes.Buffer
		b.ReadFrom(r.Body)
		got = append(got, r.Method+" "+r.URL.Path+" "+r.Header.Get("Content-Type")+" "+b.String())
		w.WriteHeader(http.StatusConflict)
		w.Write([]byte(`{"error": "key_exists", "reasons": ["a key of that name exists"]}`))
	})
	ctx := context.Background()
	reqs := []keyregistry.CreateKeyRequest{
		{Name: "k", ReleasePolicy: "package p\n", ReturnKey: true},
		{Name: "k", KeyMaterial: []byte{0xfb, 0xff, 0x00}},
		{Name: "k"},
	}
	for _, req := range reqs {
		if _, err := c.CreateKey(ctx, req); !errors.Is(err, keyregistry.ErrKeyExists) || !strings.Contains(err.Error(), "a key of that name exists") {
			t.Errorf("CreateKey: %v", err)
		}
	}
	c.DeleteKey(ctx, "a b")
	c.GetKey(ctx, "k")
	want := []string{
		`POST /v1/admin/keys application/json {"name":"k","release_policy":"package p\n","return_key":true}`,
		`POST /v1/admin/keys application/json {"name":"k","key_material":"-_8A"}`,
		`POST /v1/admin/keys application/json {"name":"k"}`,
		`DELETE /v1/admin/keys/a b  `,
		`GET /v1/admin/keys/k  `,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("requests:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for _, body := range got[:3] {
		var v map[string]any
		if err := json.Unmarshal([]byte(body[strings.Index(body, "{"):]), &v); err != nil {
			t.Errorf("body is not JSON: %s", body)
		}
	}
}

// TestErrorAnswers: error bodies decode into *Error; a body without the
// verifier's shape keeps the HTTP status.
func TestErrorAnswers(t *testing.T) {
	tests := map[string]struct {
		status   int
		body     string
		wantCode string
		wantErr  error
	}{
		"unknown":       {status: 404, body: `{"error": "key_unknown", "reasons": ["no key x"]}`, wantCode: "key_unknown", wantErr: keyregistry.ErrKeyUnknown},
		"policy":        {status: 400, body: `{"error": "invalid_policy", "reasons": ["x"]}`, wantCode: "invalid_policy", wantErr: keyregistry.ErrInvalidPolicy},
		"plain text":    {status: 502, body: `bad gateway`, wantCode: "Bad Gateway"},
		"404 not ours":  {status: 404, body: `404 page not found`, wantCode: "Not Found"},
		"empty":         {status: 503, wantCode: "Service Unavailable"},
		"other code":    {status: 409, body: `{"error": "conflict"}`, wantCode: "conflict"},
		"redirect is 3": {status: 307, body: `{}`, wantCode: "Temporary Redirect"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			c := serveUnix(t, func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(tc.status)
				w.Write([]byte(tc.body))
			})
			_, err := c.GetKey(context.Background(), "x")
			var answer *keyregistry.Error
			if !errors.As(err, &answer) || answer.Status != tc.status || answer.Code != tc.wantCode {
				t.Fatalf("GetKey: %#v", err)
			}
			for _, s := range []error{keyregistry.ErrKeyUnknown, keyregistry.ErrKeyExists, keyregistry.ErrInvalidPolicy} {
				if errors.Is(err, s) != (s == tc.wantErr) {
					t.Errorf("errors.Is(%v, %v) = %v", err, s, !(s == tc.wantErr))
				}
			}
		})
	}
}

// TestAnswerTooLarge: an answer over the limit is refused.
func TestAnswerTooLarge(t *testing.T) {
	c := serveUnix(t, func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"name": "x", "release_policy": "`))
		w.Write(bytes.Repeat([]byte("a"), 3<<20))
		w.Write([]byte(`"}`))
	})
	if _, err := c.GetKey(context.Background(), "x"); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("GetKey of a huge answer: %v", err)
	}
}

func FuzzSecretUnmarshal(f *testing.F) {
	for _, s := range []string{`"AAEC"`, `null`, `""`, `"=="`, `"a"`, `5`, `"`, `"AAEC\u0041"`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var s keyregistry.Secret
		if err := s.UnmarshalJSON(b); err != nil && s != nil {
			t.Errorf("error %v with a secret", err)
		}
		var resp keyregistry.KeyResponse
		_ = json.Unmarshal(append(append([]byte(`{"key": {"name": "k"}, "key_material": `), b...), '}'), &resp)
	})
}

// TestKeyResponseMaterialIsBytes: the answer's key material decodes into
// the Secret, never into the API's string field it shadows, and the rest of
// the API's body decodes as usual.
func TestKeyResponseMaterialIsBytes(t *testing.T) {
	var resp keyregistry.KeyResponse
	body := `{"key":{"name":"k","origin":"platform","latest_version":1},"version":1,"key_material":"AAEC"}`
	if err := json.Unmarshal([]byte(body), &resp); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(resp.KeyMaterial, []byte{0, 1, 2}) || resp.KeyResponse.KeyMaterial != "" {
		t.Errorf("key material %x as bytes, %q as a string; want 000102 as bytes only", []byte(resp.KeyMaterial), resp.KeyResponse.KeyMaterial)
	}
	if resp.Key.Name != "k" || resp.Key.Origin != keyregistry.OriginPlatform || resp.Version != 1 {
		t.Errorf("decoded %+v", resp.KeyResponse)
	}
}
