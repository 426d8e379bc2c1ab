package api

import (
	"errors"
	"testing"

	"github.com/confidant-cvm/confidant/verifier/internal/fault"
)

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
		"negative":      {body: `{"version": -1}`, wantErr: fault.ErrBadRequest},
		"string":        {body: `{"version": "3"}`, wantErr: fault.ErrBadRequest},
		"float":         {body: `{"version": 1.5}`, wantErr: fault.ErrBadRequest},
		"unknown field": {body: `{"version": 1, "key": "x"}`, wantErr: fault.ErrBadRequest},
		"trailing":      {body: `{"version": 1} {}`, wantErr: fault.ErrBadRequest},
		"not JSON":      {body: `version=1`, wantErr: fault.ErrBadRequest},
		"array":         {body: `[1]`, wantErr: fault.ErrBadRequest},
		"huge number":   {body: `{"version": 1e400}`, wantErr: fault.ErrBadRequest},
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
		if err != nil && !errors.Is(err, fault.ErrBadRequest) {
			t.Fatalf("error %v is not a bad request", err)
		}
	})
}
