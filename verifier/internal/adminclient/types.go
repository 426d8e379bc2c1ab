// Package adminclient is the verifier's administration API as seen by clients:
// a Client over the contract in shared/api/admin, whose paths, key origins
// and bodies are re-exported here under their names. The API is served on
// its own listener, never on the public port: a unix socket
// (<state-dir>/admin.sock, mode 0600) by default, or TCP with mutual TLS.
// shared/api/admin lists the routes.
package adminclient

import adminapi "github.com/confidant-cvm/confidant/shared/api/admin"

// Paths.
const (
	PathKeys            = adminapi.PathKeys
	PathPolicies        = adminapi.PathPolicies
	PathReferenceValues = adminapi.PathReferenceValues
	PathAudit           = adminapi.PathAudit
	PathAuditExport     = adminapi.PathAuditExport
	PathAuditVerify     = adminapi.PathAuditVerify
)

// Key origins.
const (
	OriginPlatform = adminapi.OriginPlatform
	OriginCustomer = adminapi.OriginCustomer
)

// The request and response bodies (shared/api/admin documents them).
type (
	KeyVersion        = adminapi.KeyVersion
	Key               = adminapi.Key
	KeyList           = adminapi.KeyList
	CreateKeyRequest  = adminapi.CreateKeyRequest
	RotateKeyRequest  = adminapi.RotateKeyRequest
	SetPolicyRequest  = adminapi.SetPolicyRequest
	KeyResponse       = adminapi.KeyResponse
	DeleteResponse    = adminapi.DeleteResponse
	PolicyResponse    = adminapi.PolicyResponse
	ReferenceResponse = adminapi.ReferenceResponse
	AuditEntry        = adminapi.AuditEntry
	AuditList         = adminapi.AuditList
	AuditProblem      = adminapi.AuditProblem
	AuditReport       = adminapi.AuditReport
)
