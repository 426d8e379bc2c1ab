package evidence

import (
	"encoding/base64"

	"github.com/lestrrat-go/jwx/v3/jwk"
)

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func exportKey(k jwk.Key, dst any) error { return jwk.Export(k, dst) }
