// Package simsp is the wire protocol between the in-guest agent and the
// simulated AMD secure processor that hostd runs for "sim" guests.
//
// The transport is a virtio-serial port named [PortName] ("confidant.sp"):
// the guest sees it as /dev/vportNpM (found through
// /sys/class/virtio-ports/*/name), hostd sees the other end as a unix socket
// served by QEMU's socket chardev. Messages are newline-delimited JSON
// objects, one per line, with byte strings as base64url without padding.
//
// Request (guest → host), at most [MaxRequestLine] bytes:
//
//	{"version":1,"report_data":"<base64url, exactly 64 bytes>"}
//
// The guest chooses REPORT_DATA only. Everything else in the report is the
// host's, fixed for the launch as SNP hardware fixes it: MEASUREMENT, POLICY
// and HOST_DATA (hostd puts the guest's identity there, so every VM has its
// own token sub).
//
// Response (host → guest), at most [MaxResponseLine] bytes, either
//
//	{"version":1,"report":"<base64url>","cert_table":"<base64url>"}
//
// where report is an SNP ATTESTATION_REPORT (go-sev-guest abi layout) whose
// REPORT_DATA is the requested value and cert_table an SNP extended-report
// certificate table (optional), or
//
//	{"version":1,"error":"<reason>"}
//
// Decoding is strict on both sides: unknown, duplicate or missing fields,
// a version other than [Version], padded or standard base64, wrong sizes and
// trailing data are all errors ([ErrMalformed], [ErrVersion], [ErrTooLarge]).
// Empty lines are ignored by the server, so a client may send "\n" to
// resynchronise. The protocol is strictly request/response: one response per
// request line, in order.
//
// Nothing in this protocol is trusted by the verifier: the report carries its
// own signature, and its REPORT_DATA binds it to the guest's runtime data.
package simsp
