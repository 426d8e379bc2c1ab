// Package api is the contract of the verifier's public HTTP API, imported by
// both ends: the verifier's handlers, the agent's client and the load
// generator. It holds the paths, the request and response bodies, the error
// codes and the rule for key names. Package admin beside it is the same for
// the administration API.
//
//	POST /v1/challenge                      → ChallengeResponse
//	POST /v1/attest[?audience=A...]         → AttestResponse; body: the evidence envelope (shared/evidence)
//	POST /v1/keys/{name}/release            → ReleaseResponse; bearer token, body ReleaseRequest optional
//	GET  /v1/jwks                           → the public signing keys (JWK Set)
//	GET  /.well-known/openid-configuration  → OIDC discovery
//
// Every failure answers an ErrorBody. Bytes are base64url without padding.
package api

import (
	"net/url"
	"time"
)

// Paths of the public API.
const (
	PathChallenge = "/v1/challenge"
	PathAttest    = "/v1/attest"
	PathJWKS      = "/v1/jwks"
	PathDiscovery = "/.well-known/openid-configuration"
	// QueryAudience is the query parameter of PathAttest naming a token
	// audience (repeatable).
	QueryAudience = "audience"
)

// ReleasePath is the path of POST /v1/keys/{name}/release.
func ReleasePath(name string) string {
	return "/v1/keys/" + url.PathEscape(name) + "/release"
}

// ChallengeResponse is the body of a successful POST /v1/challenge.
type ChallengeResponse struct {
	// Nonce is base64url without padding.
	Nonce string `json:"nonce"`
	// ExpiresAt is RFC 3339.
	ExpiresAt time.Time `json:"expires_at"`
}

// AttestResponse is the body of a successful POST /v1/attest.
type AttestResponse struct {
	Token string `json:"token"`
}

// ReleaseRequest is the optional body of POST /v1/keys/{name}/release.
type ReleaseRequest struct {
	// Version asks for one version of the key; 0 or absent: the latest.
	Version int `json:"version"`
}

// ReleaseResponse is the body of a successful release (as
// application/json; a client also takes the bare JWE as application/jose).
type ReleaseResponse struct {
	// JWE is the key as a compact JWE to the token's runtime key.
	JWE     string `json:"jwe"`
	Key     string `json:"key"`
	Version int    `json:"version"`
}

// ErrorBody is the JSON body of every error response, on the public and
// the admin API.
type ErrorBody struct {
	Error   string   `json:"error"`
	Reasons []string `json:"reasons"`
}

// Error codes of ErrorBody. They are stable: clients branch on them.
const (
	CodeMalformed        = "malformed_request"
	CodeTooLarge         = "request_too_large"
	CodeNonceUnknown     = "nonce_unknown"
	CodeNonceExpired     = "nonce_expired"
	CodeNonceReused      = "nonce_reused"
	CodeDenied           = "evidence_denied"
	CodeRateLimited      = "rate_limited"
	CodeStoreUnavailable = "store_unavailable"
	CodeOverloaded       = "overloaded"
	CodeNotReady         = "not_ready"
	CodePolicyError      = "policy_error"
	CodeInternal         = "internal_error"
	CodeNotFound         = "not_found"
	CodeMethodNotAllowed = "method_not_allowed"
	CodeMediaType        = "unsupported_media_type"
	// Key release and administration.
	CodeInvalidToken  = "invalid_token"
	CodeReleaseDenied = "release_denied"
	CodeNoRuntimeKey  = "no_runtime_key"
	CodeKeyUnknown    = "key_unknown"
	CodeKeyExists     = "key_exists"
	CodeConflict      = "conflict"
	CodeInvalidPolicy = "invalid_policy"
)
