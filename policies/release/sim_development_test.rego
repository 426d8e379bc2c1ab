package confidant.release.sim_development_test

import data.confidant.release.sim_development as p

good := {
	"status": "warning",
	"hwmodel": "confidant simulated AMD SEV-SNP (Milan)",
	"tee": {"kind": "sim-sev-snp", "simulated": true, "policy": {"debug": false}},
}

decide(claims) := r if {
	r := p.result with input as claims with data.key as {"name": "k", "version": 1, "origin": "platform"}
}

denied_for(claims, reason) if {
	r := decide(claims)
	r.allow == false
	reason in r.reasons
}

test_warning_released if decide(good).allow

test_affirming_released if decide(json.patch(good, [{"op": "replace", "path": "/status", "value": "affirming"}])).allow

test_contraindicated_denied if denied_for(
	json.patch(good, [{"op": "replace", "path": "/status", "value": "contraindicated"}]),
	"token status is contraindicated, want affirming or warning",
)

test_hardware_denied if denied_for(
	json.patch(good, [{"op": "replace", "path": "/tee/kind", "value": "sev-snp"}, {"op": "replace", "path": "/tee/simulated", "value": false}]),
	"TEE kind is sev-snp, want sim-sev-snp",
)

test_debug_denied if denied_for(json.patch(good, [{"op": "replace", "path": "/tee/policy/debug", "value": true}]), "guest policy allows debugging")

test_empty_denied if {
	r := decide({})
	r.allow == false
	count(r.reasons) == 3
}
