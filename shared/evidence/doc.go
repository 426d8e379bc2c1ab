// Package evidence defines the wire formats that bind a guest's keys to its
// hardware and vTPM evidence: the runtime data and the evidence envelope.
//
// # Runtime data
//
// The runtime data is a canonical JSON object (keys sorted, no insignificant
// whitespace, numbers and strings in one normal form) built by the agent:
//
//	{"ak":{...},"nonce":"...","runtime_key":{...},"workload":{...}}
//
// Its fields:
//
//   - nonce: the verifier's challenge nonce, 32 to 64 bytes, base64url
//     without padding.
//   - ak: the vTPM attestation key's public part as a JWK object.
//   - runtime_key: the vTPM runtime (decryption) key's public part as a JWK
//     object; released keys are encrypted to it.
//   - workload: optional, any JSON object the workload wants bound to the
//     evidence.
//
// The hardware report binds it through REPORT_DATA = SHA-512(runtime data)
// ([ReportData]); the vTPM quote through extraData = SHA-256(runtime data)
// ([TPMNonce]). Because the bytes are hashed, only one encoding of a given
// content is accepted: [ParseRuntimeData] re-encodes what it parsed and
// rejects input that differs.
//
// # Envelope
//
// The envelope carries one attestation from the agent to the verifier (see
// testdata/envelope.example.json for a complete one):
//
//	{"version":1,"tee":"sev-snp","runtime_data":"...","report":"...",
//	 "cert_table":"...","tpm":"..."}
//
// Its fields:
//
//   - version: the format version, always [Version] (1).
//   - tee: the hardware kind, one of "sev-snp", "tdx", "sim-sev-snp"
//     ([Kind]).
//   - runtime_data: the exact runtime data bytes that were hashed into the
//     report and the quote.
//   - report: the SNP attestation report (exactly 1184 bytes, for "sev-snp"
//     and "sim-sev-snp") or the TDX quote (for "tdx").
//   - cert_table: optional, SNP only; the extended-report certificate table
//     (GUID table holding the VCEK or VLEK and, optionally, the ASK and ARK),
//     so the verifier needs no network.
//   - tpm: optional; go-tpm-tools' attest.Attestation protobuf (AK public
//     key, quotes, event log).
//
// All byte fields are base64url without padding. [Decode] is strict: unknown
// fields, trailing data, padded or standard base64, an unknown version or
// kind, missing fields, wrong report sizes and oversize fields are errors.
package evidence
