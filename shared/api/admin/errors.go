package admin

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/confidant-cvm/confidant/shared/api"
)

// Error codes of the answers clients branch on, as sentinels: an *Error
// with that code matches them under errors.Is.
var (
	// ErrKeyExists: a key of that name exists (409 key_exists).
	ErrKeyExists = errors.New(api.CodeKeyExists)
	// ErrKeyUnknown: no such key (404 key_unknown).
	ErrKeyUnknown = errors.New(api.CodeKeyUnknown)
	// ErrInvalidPolicy: the release policy does not load (400
	// invalid_policy).
	ErrInvalidPolicy = errors.New(api.CodeInvalidPolicy)
)

// Error is an error answer of the admin API, as a client sees it.
type Error struct {
	// Status is the HTTP status.
	Status int
	// Code is the answer's "error" (the HTTP status text when the body
	// had none).
	Code string
	// Reasons are the answer's "reasons".
	Reasons []string
}

func (e *Error) Error() string {
	if len(e.Reasons) == 0 {
		return fmt.Sprintf("%s (HTTP %d)", e.Code, e.Status)
	}
	return fmt.Sprintf("%s (HTTP %d): %s", e.Code, e.Status, strings.Join(e.Reasons, "; "))
}

// Is matches the sentinel of the error's code.
func (e *Error) Is(target error) bool {
	switch target {
	case ErrKeyExists, ErrKeyUnknown, ErrInvalidPolicy:
		return e.Code == target.Error()
	}
	return false
}

// DecodeError turns an error answer (status, body) into an *Error: the
// body's code and reasons when it is an api.ErrorBody with a code, the
// status text otherwise.
func DecodeError(status int, body []byte) *Error {
	e := &Error{Status: status, Code: http.StatusText(status)}
	var doc api.ErrorBody
	if json.Unmarshal(body, &doc) == nil && doc.Error != "" {
		e.Code, e.Reasons = doc.Error, doc.Reasons
	}
	return e
}
