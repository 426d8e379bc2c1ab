package admin

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"testing"
)

func TestDecodeError(t *testing.T) {
	tests := map[string]struct {
		status  int
		body    string
		want    Error
		msg     string
		matches error
	}{
		"code and reasons": {
			status: http.StatusConflict, body: `{"error":"key_exists","reasons":["a key of that name exists"]}`,
			want: Error{Status: 409, Code: "key_exists", Reasons: []string{"a key of that name exists"}},
			msg:  "key_exists (HTTP 409): a key of that name exists", matches: ErrKeyExists,
		},
		"unknown key": {
			status: http.StatusNotFound, body: `{"error":"key_unknown"}`,
			want: Error{Status: 404, Code: "key_unknown"}, msg: "key_unknown (HTTP 404)", matches: ErrKeyUnknown,
		},
		"not the API's body": {
			status: http.StatusBadGateway, body: `<html>bad gateway</html>`,
			want: Error{Status: 502, Code: "Bad Gateway"}, msg: "Bad Gateway (HTTP 502)",
		},
		"no code": {
			status: http.StatusBadRequest, body: `{"reasons":["x"]}`,
			want: Error{Status: 400, Code: "Bad Request"}, msg: "Bad Request (HTTP 400)",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			e := DecodeError(tc.status, []byte(tc.body))
			if e.Status != tc.want.Status || e.Code != tc.want.Code || !slices.Equal(e.Reasons, tc.want.Reasons) {
				t.Fatalf("DecodeError = %+v, want %+v", e, tc.want)
			}
			if e.Error() != tc.msg {
				t.Errorf("Error() = %q, want %q", e.Error(), tc.msg)
			}
			wrapped := fmt.Errorf("POST /v1/admin/keys: %w", e)
			for _, s := range []error{ErrKeyExists, ErrKeyUnknown, ErrInvalidPolicy} {
				if got := errors.Is(wrapped, s); got != (s == tc.matches) {
					t.Errorf("errors.Is(%v, %v) = %v", wrapped, s, got)
				}
			}
		})
	}
}
