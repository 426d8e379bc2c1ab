package confidant.release.image_measurement_test

import data.confidant.release.image_measurement as p

measurement := "2815d90c0708daa99149d47e98970263eb74b19a8daa42a9a92e3d58f52c904aee85f327c15424595c4b1a409bf1fb92"

key := {"name": "os-disk", "version": 2, "origin": "platform"}

good := {
	"status": "affirming",
	"dbgstat": 3,
	"hwmodel": "AMD SEV-SNP Genoa",
	"tee": {"kind": "sev-snp", "simulated": false, "measurement": measurement, "policy": {"debug": false}},
	"runtime": {"keys": {"keys": [{"kty": "RSA"}]}},
}

decide(claims) := r if {
	r := p.result with input as claims with data.key as key
}

denied_for(claims, reason) if {
	r := decide(claims)
	r.allow == false
	reason in r.reasons
}

test_image_released if {
	r := decide(good)
	r.allow == true
	r.reasons == []
}

# Every VM of the image is released: VMs differ in HOST_DATA and so in
# sub, which this policy does not pin.
test_two_vms_of_the_image_released if {
	vm1 := json.patch(good, [{"op": "add", "path": "/sub", "value": concat(":", ["sev-snp", measurement, "11"])}])
	vm2 := json.patch(good, [{"op": "add", "path": "/sub", "value": concat(":", ["sev-snp", measurement, "22"])}])
	vm1.sub != vm2.sub
	decide(vm1).allow == true
	decide(vm2).allow == true
}

test_other_measurement_denied if denied_for(
	json.patch(good, [{"op": "replace", "path": "/tee/measurement", "value": "00"}]),
	"launch measurement 00 is not one of image os-disk's",
)

test_no_measurement_denied if denied_for(json.remove(good, ["tee/measurement"]), "launch measurement missing is not one of image os-disk's")

test_tdx_denied if denied_for(
	json.patch(good, [{"op": "replace", "path": "/tee/kind", "value": "tdx"}, {"op": "replace", "path": "/hwmodel", "value": "Intel TDX"}]),
	"hardware is Intel TDX (tdx), want AMD SEV-SNP",
)

test_simulation_denied if denied_for(
	json.patch(good, [{"op": "replace", "path": "/tee/kind", "value": "sim-sev-snp"}, {"op": "replace", "path": "/tee/simulated", "value": true}, {"op": "replace", "path": "/hwmodel", "value": "confidant simulated AMD SEV-SNP (Milan)"}]),
	"hardware is confidant simulated AMD SEV-SNP (Milan) (sim-sev-snp), want AMD SEV-SNP",
)

# A simulated report must not pass by naming the hardware kind.
test_simulated_flag_denied if denied_for(
	json.patch(good, [{"op": "replace", "path": "/tee/simulated", "value": true}]),
	"hardware is AMD SEV-SNP Genoa (sev-snp), want AMD SEV-SNP",
)

test_warning_denied if denied_for(json.patch(good, [{"op": "replace", "path": "/status", "value": "warning"}]), "token status is warning, want affirming")

test_debug_denied if {
	denied_for(json.patch(good, [{"op": "replace", "path": "/tee/policy/debug", "value": true}]), "guest policy allows debugging")
	denied_for(json.remove(good, ["tee/policy"]), "guest policy allows debugging")
}

test_every_reason_listed if {
	r := decide({})
	r.allow == false
	count(r.reasons) == 4
}
