# Default release policy: what a key gets when it is created without one.
# It releases the key to any guest whose attestation token says it runs on
# hardware (SEV-SNP or TDX, never the simulation), was affirmed by its
# appraisal policy, and cannot be debugged. It does not pin an image: bind
# a key to an image with image_measurement.rego (or your own policy).
#
# Input: the claims of a token this verifier issued (already checked:
# signature, issuer, audience, expiry). data.key: {"name", "version",
# "origin"} of the key asked for.
# Result: {"allow": bool, "reasons": [...every failed check...]}.
package confidant.release.default_policy

deny contains msg if {
	not input.status == "affirming"
	msg := sprintf("token status is %v, want affirming", [object.get(input, "status", "missing")])
}

deny contains msg if {
	not input.dbgstat == 3
	msg := sprintf("debug status (dbgstat) is %v, want 3 (disabled permanently)", [object.get(input, "dbgstat", "missing")])
}

# hardware holds for verified evidence from a hardware TEE.
hardware if input.tee.kind in {"sev-snp", "tdx"}

deny contains msg if {
	not hardware
	msg := sprintf("TEE kind is %v: the default policy releases only to SEV-SNP or TDX hardware", [object.get(input, ["tee", "kind"], "missing")])
}

deny contains "evidence came from the simulated TEE" if input.tee.simulated == true

# runtime_key holds when the token carries a runtime key to wrap to (the
# verifier checks this too).
runtime_key if count(input.runtime.keys.keys) > 0

deny contains "token carries no runtime key" if not runtime_key

result := {"allow": count(deny) == 0, "reasons": sort(deny)}
