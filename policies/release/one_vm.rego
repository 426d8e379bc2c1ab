# Example release policy that binds a key to one VM: the key is released
# only to the AMD SEV-SNP guest (real hardware) whose token sub is listed
# below, whose appraisal was affirming and whose guest policy forbids
# debugging. Another VM of the same image has another sub and is refused.
#
# sub is "<kind>:<launch measurement hex>:<HOST_DATA hex>" (TDX:
# "tdx:<MRTD hex>:<MRCONFIGID hex>"): the verifier computes it from the
# verified report; hostd launches every guest with a digest of its own
# identity in HOST_DATA (`confidant-hostd vm show NAME` prints it as
# identity.host_data). Pinning the sub pins the image too: after an image
# update the VM has a new sub, to be added here. To bind a key to every VM
# of an image instead, see image_measurement.rego.
#
# Input: the token's claims. data.key: {"name", "version", "origin"}.
package confidant.release.one_vm

# The VMs the key is bound to, each with a note for people.
vm_subs := {"sev-snp:2815d90c0708daa99149d47e98970263eb74b19a8daa42a9a92e3d58f52c904aee85f327c15424595c4b1a409bf1fb92:5d3a8c5b2f6e4a1d9c0b7e8f6a5d4c3b2a1908f7e6d5c4b3a29180f7e6d5c4b3": "db-primary (confidant-demo-os 1.0)"}

# snp_hardware holds for verified evidence from AMD SEV-SNP hardware.
snp_hardware if {
	input.tee.kind == "sev-snp"
	startswith(input.hwmodel, "AMD SEV-SNP ")
	input.tee.simulated == false
}

deny contains msg if {
	not snp_hardware
	msg := sprintf("hardware is %v (%v), want AMD SEV-SNP", [object.get(input, "hwmodel", "missing"), object.get(input, ["tee", "kind"], "missing")])
}

deny contains msg if {
	not input.status == "affirming"
	msg := sprintf("token status is %v, want affirming", [object.get(input, "status", "missing")])
}

# vm_known holds when the token names one of the VMs the key is bound to.
vm_known if vm_subs[input.sub]

deny contains msg if {
	not vm_known
	msg := sprintf("token sub %v is not a VM key %v is bound to", [object.get(input, "sub", "missing"), data.key.name])
}

deny contains "guest policy allows debugging" if not input.tee.policy.debug == false

result := {"allow": count(deny) == 0, "reasons": sort(deny)}
