# Example release policy that binds a key to one image: the key is released
# only to an AMD SEV-SNP guest (real hardware) whose appraisal was
# affirming, whose launch measurement is one of the image's, and whose
# guest policy forbids debugging. Copy it per key and put the measurements
# `confidant-image measure` (or `build`) printed for the image below.
#
# Input: the token's claims. data.key: {"name", "version", "origin"}.
package confidant.release.image_measurement

# The image's launch measurements (hex SHA-384), one per vCPU count or
# firmware build it boots with, each with a note for people.
image_measurements := {"2815d90c0708daa99149d47e98970263eb74b19a8daa42a9a92e3d58f52c904aee85f327c15424595c4b1a409bf1fb92": "confidant-demo-os 1.0, 2 vCPUs"}

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

# measurement_known holds when the launch measurement is one of the image's.
measurement_known if image_measurements[input.tee.measurement]

deny contains msg if {
	not measurement_known
	msg := sprintf("launch measurement %v is not one of image %v's", [object.get(input, ["tee", "measurement"], "missing"), data.key.name])
}

deny contains "guest policy allows debugging" if not input.tee.policy.debug == false

result := {"allow": count(deny) == 0, "reasons": sort(deny)}
