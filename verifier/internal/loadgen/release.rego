# Release policy of the keys confidant-loadgen creates for a load test: it
# releases the key to every token of this verifier for sim-sev-snp evidence
# that the appraisal affirmed, which is what each simulated agent gets. The
# verifier has checked the token (signature, issuer, audience, expiry) and
# that it carries a runtime key before the policy runs. Never give a real
# key this policy.
package confidant.release.loadgen

deny contains msg if {
	not input.tee.kind == "sim-sev-snp"
	msg := sprintf("TEE kind is %v, want sim-sev-snp", [object.get(input, ["tee", "kind"], "missing")])
}

deny contains msg if {
	not input.status == "affirming"
	msg := sprintf("token status is %v, want affirming", [object.get(input, "status", "missing")])
}

result := {"allow": count(deny) == 0, "reasons": sort(deny)}
