package confidant.release.one_vm_test

import data.confidant.release.one_vm as p

measurement := "2815d90c0708daa99149d47e98970263eb74b19a8daa42a9a92e3d58f52c904aee85f327c15424595c4b1a409bf1fb92"

pinned_host_data := "5d3a8c5b2f6e4a1d9c0b7e8f6a5d4c3b2a1908f7e6d5c4b3a29180f7e6d5c4b3"

other_host_data := "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0"

key := {"name": "db-key", "version": 1, "origin": "customer"}

# vm returns the claims of a token of VM host_data running image meas.
vm(meas, host_data) := {
	"sub": concat(":", ["sev-snp", meas, host_data]),
	"status": "affirming",
	"dbgstat": 3,
	"hwmodel": "AMD SEV-SNP Genoa",
	"tee": {"kind": "sev-snp", "simulated": false, "measurement": meas, "host_data": host_data, "policy": {"debug": false}},
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

test_pinned_vm_released if {
	r := decide(vm(measurement, pinned_host_data))
	r.allow == true
	r.reasons == []
}

# Another VM of the same image: same measurement, its own HOST_DATA.
test_other_vm_of_the_image_denied if denied_for(
	vm(measurement, other_host_data),
	sprintf("token sub sev-snp:%s:%s is not a VM key db-key is bound to", [measurement, other_host_data]),
)

# The pinned VM's HOST_DATA on another image (a host can launch any image
# with any HOST_DATA) is another sub.
test_pinned_host_data_other_image_denied if denied_for(
	vm(concat("", ["00", substring(measurement, 2, -1)]), pinned_host_data),
	sprintf("token sub sev-snp:00%s:%s is not a VM key db-key is bound to", [substring(measurement, 2, -1), pinned_host_data]),
)

test_no_sub_denied if denied_for(json.remove(vm(measurement, pinned_host_data), ["sub"]), "token sub missing is not a VM key db-key is bound to")

test_simulation_denied if denied_for(
	json.patch(vm(measurement, pinned_host_data), [
		{"op": "replace", "path": "/sub", "value": concat(":", ["sim-sev-snp", measurement, pinned_host_data])},
		{"op": "replace", "path": "/tee/kind", "value": "sim-sev-snp"},
		{"op": "replace", "path": "/tee/simulated", "value": true},
		{"op": "replace", "path": "/hwmodel", "value": "confidant simulated AMD SEV-SNP (Milan)"},
	]),
	"hardware is confidant simulated AMD SEV-SNP (Milan) (sim-sev-snp), want AMD SEV-SNP",
)

test_warning_denied if denied_for(
	json.patch(vm(measurement, pinned_host_data), [{"op": "replace", "path": "/status", "value": "warning"}]),
	"token status is warning, want affirming",
)

test_debug_denied if denied_for(
	json.patch(vm(measurement, pinned_host_data), [{"op": "replace", "path": "/tee/policy/debug", "value": true}]),
	"guest policy allows debugging",
)

test_every_reason_listed if {
	r := decide({})
	r.allow == false
	count(r.reasons) == 4
}
