# Tests of the release policy confidant-image build writes for a simulated
# UEFI image (ReleasePolicy with boot uefi), generated for the measurements
# a1a1... (1 vCPU) and b2b2... (2 vCPUs) of image "demo", key os-disk.
package confidant.release.sim_secure_boot_image_measurement_test

import data.confidant.release.sim_secure_boot_image_measurement as p

measurement := concat("", [x | some _ in numbers.range(1, 48); x := "a1"])

other_vcpus := concat("", [x | some _ in numbers.range(1, 48); x := "b2"])

key := {"name": "os-disk", "version": 1, "origin": "platform"}

good := {
	"status": "affirming",
	"secboot": true,
	"dbgstat": 3,
	"hwmodel": "confidant simulated AMD SEV-SNP (Milan)",
	"tee": {"kind": "sim-sev-snp", "simulated": true, "measurement": measurement, "policy": {"debug": false}},
}

decide(claims) := r if {
	r := p.result with input as claims with data.key as key
}

denied_for(claims, reason) if {
	r := decide(claims)
	r.allow == false
	reason in r.reasons
}

test_affirming_released if {
	r := decide(good)
	r.allow == true
	r.reasons == []
}

test_other_vcpu_count_released if decide(json.patch(good, [{"op": "replace", "path": "/tee/measurement", "value": other_vcpus}])).allow == true

# A warning (for example Secure Boot off, or a PCR that is not the image's)
# is what the development appraisal reports for SeaBIOS guests: refused.
test_warning_denied if denied_for(
	json.patch(good, [{"op": "replace", "path": "/status", "value": "warning"}]),
	"token status is warning, want affirming",
)

test_contraindicated_denied if denied_for(
	json.patch(good, [{"op": "replace", "path": "/status", "value": "contraindicated"}]),
	"token status is contraindicated, want affirming",
)

test_no_status_denied if denied_for(json.remove(good, ["status"]), "token status is missing, want affirming")

test_other_measurement_denied if denied_for(
	json.patch(good, [{"op": "replace", "path": "/tee/measurement", "value": "00"}]),
	"launch measurement 00 is not one of image os-disk's",
)

test_hardware_kind_denied if denied_for(
	json.patch(good, [{"op": "replace", "path": "/tee/kind", "value": "sev-snp"}]),
	"hardware is confidant simulated AMD SEV-SNP (Milan) (sev-snp), want the simulated AMD SEV-SNP",
)

test_not_simulated_denied if {
	r := decide(json.patch(good, [{"op": "replace", "path": "/tee/simulated", "value": false}]))
	r.allow == false
}

test_hardware_model_denied if denied_for(
	json.patch(good, [{"op": "replace", "path": "/hwmodel", "value": "AMD SEV-SNP Milan"}]),
	"hardware is AMD SEV-SNP Milan (sim-sev-snp), want the simulated AMD SEV-SNP",
)

test_debug_denied if denied_for(
	json.patch(good, [{"op": "replace", "path": "/tee/policy/debug", "value": true}]),
	"guest policy allows debugging",
)

test_no_guest_policy_denied if denied_for(json.remove(good, ["tee/policy"]), "guest policy allows debugging")

test_empty_claims_denied if {
	r := decide({})
	r.allow == false
	count(r.reasons) == 4
}
