//go:build !cgo

package offline

import "testing"

func recordGolden(t *testing.T) {
	t.Fatal("-record needs the TPM simulator: run with CGO_ENABLED=1")
}
