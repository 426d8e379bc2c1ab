package fault

import (
	"errors"
	"fmt"
	"net/http"
	"testing"

	wire "github.com/confidant-cvm/confidant/shared/api"
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
		"body too large":     {err: &http.MaxBytesError{Limit: 1}, wantStatus: 413, wantCode: wire.CodeTooLarge},
		"field too large":    {err: fmt.Errorf("x: %w", errors.Join(evidence.ErrMalformed, evidence.ErrTooLarge)), wantStatus: 413, wantCode: wire.CodeTooLarge},
		"malformed evidence": {err: fmt.Errorf("x: %w", evidence.ErrMalformed), wantStatus: 400, wantCode: wire.CodeMalformed},
		"bad request":        {err: ErrBadRequest, wantStatus: 400, wantCode: wire.CodeMalformed},
		"nonce unknown":      {err: fmt.Errorf("x: %w", challenge.ErrUnknown), wantStatus: 401, wantCode: wire.CodeNonceUnknown},
		"nonce expired":      {err: challenge.ErrExpired, wantStatus: 401, wantCode: wire.CodeNonceExpired},
		"nonce reused":       {err: fmt.Errorf("x: %w", store.ErrNonceReused), wantStatus: 401, wantCode: wire.CodeNonceReused},
		"denied":             {err: fmt.Errorf("x: %w", denied), wantStatus: 403, wantCode: wire.CodeDenied},
		"rate limited":       {err: ErrRateLimited, wantStatus: 429, wantCode: wire.CodeRateLimited},
		"store unavailable":  {err: fmt.Errorf("x: %w", store.ErrUnavailable), wantStatus: 503, wantCode: wire.CodeStoreUnavailable},
		"overloaded":         {err: ErrOverloaded, wantStatus: 503, wantCode: wire.CodeOverloaded},
		// A store failure while redeeming is 503, not a nonce error.
		"store down redeeming": {err: fmt.Errorf("redeeming nonce: %w", errors.Join(store.ErrUnavailable, errors.New("disk"))), wantStatus: 503, wantCode: wire.CodeStoreUnavailable},
		"policy error":         {err: policy.ErrEvaluation, wantStatus: 500, wantCode: wire.CodePolicyError},
		"no bearer":            {err: ErrNoBearer, wantStatus: 401, wantCode: wire.CodeInvalidToken},
		"invalid token":        {err: fmt.Errorf("x: %w", token.ErrInvalid), wantStatus: 401, wantCode: wire.CodeInvalidToken},
		"token algorithm":      {err: errors.Join(token.ErrInvalid, token.ErrAlgorithm), wantStatus: 401, wantCode: wire.CodeInvalidToken},
		"release denied":       {err: fmt.Errorf("x: %w", &release.DeniedError{Reasons: []string{"a"}}), wantStatus: 403, wantCode: wire.CodeReleaseDenied},
		"no runtime key":       {err: fmt.Errorf("x: %w", release.ErrNoRuntimeKey), wantStatus: 403, wantCode: wire.CodeNoRuntimeKey},
		"key unknown":          {err: errors.Join(release.ErrKeyUnknown, store.ErrNotFound), wantStatus: 404, wantCode: wire.CodeKeyUnknown},
		"key exists":           {err: errors.Join(release.ErrKeyExists, store.ErrConflict), wantStatus: 409, wantCode: wire.CodeKeyExists},
		"conflict":             {err: release.ErrConflict, wantStatus: 409, wantCode: wire.CodeConflict},
		"invalid policy":       {err: release.ErrInvalidPolicy, wantStatus: 400, wantCode: wire.CodeInvalidPolicy},
		"invalid appraisal":    {err: policy.ErrLoad, wantStatus: 400, wantCode: wire.CodeInvalidPolicy},
		"invalid key request":  {err: release.ErrInvalid, wantStatus: 400, wantCode: wire.CodeMalformed},
		"release policy error": {err: release.ErrPolicyEvaluation, wantStatus: 500, wantCode: wire.CodePolicyError},
		// A store failure while releasing is 503, whatever else matched.
		"store down releasing": {err: errors.Join(release.ErrKeyUnknown, store.ErrUnavailable), wantStatus: 503, wantCode: wire.CodeStoreUnavailable},
		"unknown":              {err: errors.New("boom"), wantStatus: 500, wantCode: wire.CodeInternal},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			status, body := Classify(tt.err)
			if status != tt.wantStatus || body.Error != tt.wantCode || len(body.Reasons) == 0 {
				t.Fatalf("classify = %d %+v, want %d %s", status, body, tt.wantStatus, tt.wantCode)
			}
		})
	}
	if _, body := Classify(denied); len(body.Reasons) != 2 {
		t.Fatalf("denial reasons %v, want all of them", body.Reasons)
	}
	// Internal details never reach the client.
	if _, body := Classify(errors.New("secret detail")); body.Reasons[0] == "secret detail" {
		t.Fatal("internal error text leaked")
	}
}
