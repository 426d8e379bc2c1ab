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
	"github.com/confidant-cvm/confidant/verifier/internal/store"
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
		// A store failure while redeeming is 503, not a nonce error.
		"store down redeeming": {err: fmt.Errorf("redeeming nonce: %w", errors.Join(store.ErrUnavailable, errors.New("disk"))), wantStatus: 503, wantCode: CodeStoreUnavailable},
		"policy error":         {err: policy.ErrEvaluation, wantStatus: 500, wantCode: CodePolicyError},
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
