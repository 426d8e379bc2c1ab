package api

import (
	"errors"
	"fmt"
	"net/http"
	"testing"

	"github.com/confidant-cvm/confidant/shared/evidence"
	"github.com/confidant-cvm/confidant/verifier/internal/appraise"
	"github.com/confidant-cvm/confidant/verifier/internal/challenge"
	"github.com/confidant-cvm/confidant/verifier/internal/policy"
	"github.com/confidant-cvm/confidant/verifier/internal/release"
	"github.com/confidant-cvm/confidant/verifier/internal/store"
	"github.com/confidant-cvm/confidant/verifier/internal/token"
)

func TestClassify(t *testing.T) {
	denied := &appraise.DeniedError{Reasons: []string{"a", "b"}}
	tests := map[string]struct {
		err        error
		wantStatus int
		wantCode   string
	}{
		"body too large":     {err: &http.MaxBytesError{Limit: 1}, wantStatus: 413, wantCode: CodeTooLarge},
		"field too large":    {err: fmt.Errorf("x: %w", errors.Join(evidence.ErrMalformed, evidence.ErrTooLarge)), wantStatus: 413, wantCode: CodeTooLarge},
		"malformed evidence": {err: fmt.Errorf("x: %w", evidence.ErrMalformed), wantStatus: 400, wantCode: CodeMalformed},
		"bad request":        {err: errBadRequest, wantStatus: 400, wantCode: CodeMalformed},
		"nonce unknown":      {err: fmt.Errorf("x: %w", challenge.ErrUnknown), wantStatus: 401, wantCode: CodeNonceUnknown},
		"nonce expired":      {err: challenge.ErrExpired, wantStatus: 401, wantCode: CodeNonceExpired},
		"nonce reused":       {err: fmt.Errorf("x: %w", store.ErrNonceReused), wantStatus: 401, wantCode: CodeNonceReused},
		"denied":             {err: fmt.Errorf("x: %w", denied), wantStatus: 403, wantCode: CodeDenied},
		"rate limited":       {err: errRateLimited, wantStatus: 429, wantCode: CodeRateLimited},
		"store unavailable":  {err: fmt.Errorf("x: %w", store.ErrUnavailable), wantStatus: 503, wantCode: CodeStoreUnavailable},
		"overloaded":         {err: errOverloaded, wantStatus: 503, wantCode: CodeOverloaded},
		// A store failure while redeeming is 503, not a nonce error.
		"store down redeeming": {err: fmt.Errorf("redeeming nonce: %w", errors.Join(store.ErrUnavailable, errors.New("disk"))), wantStatus: 503, wantCode: CodeStoreUnavailable},
		"policy error":         {err: policy.ErrEvaluation, wantStatus: 500, wantCode: CodePolicyError},
		"no bearer":            {err: errNoBearer, wantStatus: 401, wantCode: CodeInvalidToken},
		"invalid token":        {err: fmt.Errorf("x: %w", token.ErrInvalid), wantStatus: 401, wantCode: CodeInvalidToken},
		"token algorithm":      {err: errors.Join(token.ErrInvalid, token.ErrAlgorithm), wantStatus: 401, wantCode: CodeInvalidToken},
		"release denied":       {err: fmt.Errorf("x: %w", &release.DeniedError{Reasons: []string{"a"}}), wantStatus: 403, wantCode: CodeReleaseDenied},
		"no runtime key":       {err: fmt.Errorf("x: %w", release.ErrNoRuntimeKey), wantStatus: 403, wantCode: CodeNoRuntimeKey},
		"key unknown":          {err: errors.Join(release.ErrKeyUnknown, store.ErrNotFound), wantStatus: 404, wantCode: CodeKeyUnknown},
		"key exists":           {err: errors.Join(release.ErrKeyExists, store.ErrConflict), wantStatus: 409, wantCode: CodeKeyExists},
		"conflict":             {err: release.ErrConflict, wantStatus: 409, wantCode: CodeConflict},
		"invalid policy":       {err: release.ErrInvalidPolicy, wantStatus: 400, wantCode: CodeInvalidPolicy},
		"invalid appraisal":    {err: policy.ErrLoad, wantStatus: 400, wantCode: CodeInvalidPolicy},
		"invalid key request":  {err: release.ErrInvalid, wantStatus: 400, wantCode: CodeMalformed},
		"release policy error": {err: release.ErrPolicyEvaluation, wantStatus: 500, wantCode: CodePolicyError},
		// A store failure while releasing is 503, whatever else matched.
		"store down releasing": {err: errors.Join(release.ErrKeyUnknown, store.ErrUnavailable), wantStatus: 503, wantCode: CodeStoreUnavailable},
		"unknown":              {err: errors.New("boom"), wantStatus: 500, wantCode: CodeInternal},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			status, body := classify(tt.err)
			if status != tt.wantStatus || body.Error != tt.wantCode || len(body.Reasons) == 0 {
				t.Fatalf("classify = %d %+v, want %d %s", status, body, tt.wantStatus, tt.wantCode)
			}
		})
	}
	if _, body := classify(denied); len(body.Reasons) != 2 {
		t.Fatalf("denial reasons %v, want all of them", body.Reasons)
	}
	// Internal details never reach the client.
	if _, body := classify(errors.New("secret detail")); body.Reasons[0] == "secret detail" {
		t.Fatal("internal error text leaked")
	}
}

func TestParseReleaseRequest(t *testing.T) {
	tests := map[string]struct {
		body        string
		wantVersion int
		wantErr     error
	}{
		"empty":         {body: ""},
		"blank":         {body: " \n"},
		"empty object":  {body: "{}"},
		"version":       {body: `{"version": 3}`, wantVersion: 3},
		"negative":      {body: `{"version": -1}`, wantErr: errBadRequest},
		"string":        {body: `{"version": "3"}`, wantErr: errBadRequest},
		"float":         {body: `{"version": 1.5}`, wantErr: errBadRequest},
		"unknown field": {body: `{"version": 1, "key": "x"}`, wantErr: errBadRequest},
		"trailing":      {body: `{"version": 1} {}`, wantErr: errBadRequest},
		"not JSON":      {body: `version=1`, wantErr: errBadRequest},
		"array":         {body: `[1]`, wantErr: errBadRequest},
		"huge number":   {body: `{"version": 1e400}`, wantErr: errBadRequest},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			req, err := ParseReleaseRequest([]byte(tt.body))
			if !errors.Is(err, tt.wantErr) || (err == nil && req.Version != tt.wantVersion) {
				t.Fatalf("got %+v, %v; want %d, %v", req, err, tt.wantVersion, tt.wantErr)
			}
		})
	}
}

// FuzzParseReleaseRequest feeds hostile release bodies to the parser.
func FuzzParseReleaseRequest(f *testing.F) {
	for _, s := range []string{"", "{}", `{"version":2}`, `{"version":-1}`, `[`, `{"version":1e99}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		req, err := ParseReleaseRequest(b)
		if err == nil && req.Version < 0 {
			t.Fatalf("accepted version %d", req.Version)
		}
		if err != nil && !errors.Is(err, errBadRequest) {
			t.Fatalf("error %v is not a bad request", err)
		}
	})
}
