package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/confidant-cvm/confidant/policies"
	admin "github.com/confidant-cvm/confidant/shared/api/admin"
	"github.com/confidant-cvm/confidant/verifier/internal/policy"
	"github.com/confidant-cvm/confidant/verifier/internal/release"
	"github.com/confidant-cvm/confidant/verifier/internal/seal"
	"github.com/confidant-cvm/confidant/verifier/internal/store"
)

// noPolicies refuses every policy load: the fuzzed routes below decode
// JSON bodies, and the policy routes take raw Rego the policy package's
// own tests cover.
type noPolicies struct{}

func (noPolicies) LoadPolicy(context.Context, string, []byte) (*policy.Policy, *policy.Set, error) {
	return nil, nil, errors.New("not in this test")
}

func (noPolicies) LoadReferenceValues(context.Context, []byte) (*policy.Set, error) {
	return nil, errors.New("not in this test")
}

// newFuzzAdmin serves the admin API over a real release service and SQLite
// store, with one platform key "k1" and one customer key "c1".
func newFuzzAdmin(f *testing.F) http.Handler {
	ctx := context.Background()
	st, err := store.OpenSQLite(ctx, filepath.Join(f.TempDir(), "db"))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { st.Close() })
	sealer, err := seal.New(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		f.Fatal(err)
	}
	svc, err := release.New(ctx, release.Config{Store: st, Sealer: sealer, DefaultPolicy: policies.DefaultRelease(),
		Now: func() time.Time { return time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC) }})
	if err != nil {
		f.Fatal(err)
	}
	if _, _, err := svc.Create(ctx, "k1", nil, false); err != nil {
		f.Fatal(err)
	}
	if _, err := svc.Import(ctx, "c1", bytes.Repeat([]byte{1}, 32), nil); err != nil {
		f.Fatal(err)
	}
	m, err := NewMetrics(prometheus.NewRegistry())
	if err != nil {
		f.Fatal(err)
	}
	h, err := NewAdmin(AdminConfig{Keys: svc, Policies: noPolicies{}, Audit: st, Metrics: m, MaxBodyBytes: 64 << 10})
	if err != nil {
		f.Fatal(err)
	}
	return h
}

// FuzzAdminBodies sends hostile bodies to the admin routes that decode
// JSON (create, rotate, set-policy) through the real handler and service.
// Whatever the body: no 5xx, errors are the stable JSON body, and key
// material appears in an answer only when the request asked for a
// generated key — never an imported one.
func FuzzAdminBodies(f *testing.F) {
	h := newFuzzAdmin(f)
	f.Add(uint8(0), "", []byte(`{"name":"n1","return_key":true}`))
	f.Add(uint8(0), "", []byte(`{"name":"n2","key_material":"AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE"}`))
	f.Add(uint8(0), "", []byte(`{"name":"n3","key_material":"AQEB","return_key":true}`))
	f.Add(uint8(0), "", []byte(`{"name":"bad name\u001b[2J","release_policy":"package x"}`))
	f.Add(uint8(1), "k1", []byte(`{"return_key":true}`))
	f.Add(uint8(1), "c1", []byte(`{"key_material":"AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI"}`))
	f.Add(uint8(1), "k1", []byte(``))
	f.Add(uint8(2), "k1", []byte(`{"release_policy":""}`))
	f.Add(uint8(2), "k1", []byte(`{"release_policy":"package p\nresult := {\"allow\": true}"}`))
	f.Add(uint8(2), "c1", []byte(`{"release_policy":1}{}`))
	f.Fuzz(func(t *testing.T, op uint8, name string, body []byte) {
		method, path := http.MethodPost, admin.PathKeys
		switch op % 3 {
		case 1:
			path += "/" + url.PathEscape(name) + "/rotate"
		case 2:
			method, path = http.MethodPut, admin.PathKeys+"/"+url.PathEscape(name)+"/release-policy"
		}
		req := httptest.NewRequest(method, "http://admin"+path, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		checkAdminAnswer(t, body, w)
	})
}

func checkAdminAnswer(t *testing.T, body []byte, w *httptest.ResponseRecorder) {
	t.Helper()
	if w.Code >= 500 {
		t.Fatalf("status %d for %q: %s", w.Code, body, w.Body)
	}
	if w.Code >= 400 {
		var e ErrorBody
		if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || e.Error == "" {
			t.Fatalf("status %d with body %q, want the error JSON (%v)", w.Code, w.Body, err)
		}
		return
	}
	var resp admin.KeyResponse
	if err := json.Unmarshal(w.Body.Bytes(), &resp); err != nil {
		t.Fatalf("status %d with body %q: %v", w.Code, w.Body, err)
	}
	if resp.KeyMaterial == "" {
		return
	}
	// The request was accepted, so it decodes.
	var asked struct {
		ReturnKey   bool   `json:"return_key"`
		KeyMaterial string `json:"key_material"`
	}
	_ = json.Unmarshal(body, &asked)
	if !asked.ReturnKey || asked.KeyMaterial != "" || resp.Key.Origin != admin.OriginPlatform {
		t.Fatalf("answer carries key material for %q (origin %s)", body, resp.Key.Origin)
	}
}
