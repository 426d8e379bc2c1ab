# Development appraisal policy for the simulated TEE (hostd's simulated AMD
# secure processor). Never use it for production secrets: the simulated
# root is a file on the host.
#
# Denies unless:
#   - the evidence is sim-sev-snp and verified against the simulated root;
#   - the guest policy forbids debugging and a migration agent;
#   - the report was requested at VMPL 0;
#   - the launch measurement is in data.reference["sim-sev-snp"].measurements;
#   - vTPM evidence is present and every PCR listed in
#     data.reference["sim-sev-snp"].pcrs (if any) has a listed value.
# Warns (verdict "warning") when secure boot is off or unknown (SeaBIOS has
# none) or when no PCR is pinned.
package confidant.appraisal.sim_development

kinds := {"sim-sev-snp"}

# tee is the verified TEE fields (an empty object if absent, so that
# messages can always be built).
tee := object.get(input, "tee", {})

# pcr_value is a quoted PCR value, or "missing".
pcr_value(bank, index) := v if {
	v := input.tpm.pcrs[bank][index]
} else := "missing"

# Checks are positive helper rules, negated where used: Rego lifts a
# reference out of "not x in xs" and "not x >= y", so such an expression
# over an undefined value would not fire. "not helper(...)" always does.

# pcr_allowed holds when the quoted PCR has one of the allowed values.
pcr_allowed(bank, index, allowed) if input.tpm.pcrs[bank][index] in allowed

# measurement_known holds when the launch measurement is a reference value.
measurement_known if ref.measurements[input.tee.measurement]

ref := object.get(data.reference, "sim-sev-snp", {})

deny contains "evidence is not sim-sev-snp" if not input.kind == "sim-sev-snp"

deny contains "report was not verified against the simulated root" if not input.tee.simulated == true

deny contains "guest policy allows debugging" if not input.tee.policy.debug == false

deny contains "guest policy allows a migration agent" if not input.tee.policy.migration_agent == false

deny contains msg if {
	not input.tee.vmpl == 0
	msg := sprintf("report VMPL is %v, want 0", [object.get(tee, "vmpl", "missing")])
}

deny contains "no reference values for sim-sev-snp" if not data.reference["sim-sev-snp"]

deny contains "no reference value for sim-sev-snp.measurements" if count(object.get(ref, "measurements", {})) == 0

deny contains msg if {
	count(ref.measurements) > 0
	not measurement_known
	msg := sprintf("measurement %v is not in the reference set", [object.get(tee, "measurement", "missing")])
}

deny contains "no vTPM evidence" if not input.tpm

deny contains msg if {
	some bank, pcrs in object.get(ref, "pcrs", {})
	some index, allowed in pcrs
	not pcr_allowed(bank, index, allowed)
	msg := sprintf("PCR %s[%s] = %v is not a reference value", [bank, index, pcr_value(bank, index)])
}

warn contains "secure boot is not enabled" if not input.tpm.secure_boot.enabled == true

warn contains "no PCR is pinned by reference values" if count(object.get(ref, "pcrs", {})) == 0

default verdict := "affirming"

verdict := "contraindicated" if count(deny) > 0

verdict := "warning" if {
	count(deny) == 0
	count(warn) > 0
}

claims["swname"] := ref.measurements[input.tee.measurement].name

claims["development"] := true

result := {
	"verdict": verdict,
	"reasons": sort(deny | warn),
	"claims": claims,
}
