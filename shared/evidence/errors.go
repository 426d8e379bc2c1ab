package evidence

import "errors"

// Sentinel errors for outcomes callers branch on. Every error returned by
// Decode and ParseRuntimeData matches ErrMalformed; some also match a more
// specific sentinel (ErrVersion, ErrUnknownKind, ErrTooLarge).
var (
	// ErrMalformed means the bytes are not a well-formed envelope or runtime
	// data (syntax, unknown or missing fields, wrong sizes, non-canonical
	// encoding).
	ErrMalformed = errors.New("malformed evidence")
	// ErrVersion means the envelope's version is not Version.
	ErrVersion = errors.New("unsupported evidence version")
	// ErrUnknownKind means the TEE kind is not one of the Kind constants.
	ErrUnknownKind = errors.New("unknown TEE kind")
	// ErrTooLarge means a field or the whole input exceeds its size cap.
	ErrTooLarge = errors.New("evidence too large")
)

// malformed wraps err so that it matches ErrMalformed as well as err.
func malformed(err error) error {
	if errors.Is(err, ErrMalformed) {
		return err
	}
	return errors.Join(ErrMalformed, err)
}
