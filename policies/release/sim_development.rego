# Development release policy for the simulated TEE (hostd's simulated AMD
# secure processor). Never use it for production secrets: whoever controls
# the host controls the simulated root.
#
# Releases the key to a guest whose token comes from sim-sev-snp evidence
# verified against the simulated root, whose appraisal was affirming or
# warning (SeaBIOS has no Secure Boot, which the development appraisal
# policy reports as a warning), and whose guest policy forbids debugging.
package confidant.release.sim_development

simulated if {
	input.tee.kind == "sim-sev-snp"
	input.tee.simulated == true
}

deny contains msg if {
	not simulated
	msg := sprintf("TEE kind is %v, want sim-sev-snp", [object.get(input, ["tee", "kind"], "missing")])
}

acceptable_status if input.status in {"affirming", "warning"}

deny contains msg if {
	not acceptable_status
	msg := sprintf("token status is %v, want affirming or warning", [object.get(input, "status", "missing")])
}

deny contains "guest policy allows debugging" if not input.tee.policy.debug == false

result := {"allow": count(deny) == 0, "reasons": sort(deny)}
