# Production appraisal policy for the simulated TEE: the SEV-SNP production
# policy (snp_production.rego) with one difference, the trusted chain. It
# affirms only reports verified against hostd's simulated root (never AMD's),
# and reads its reference values from data.reference["sim-sev-snp"]. Every
# other rule is snp_production's, word for word; policies_test.go derives
# this file's rules from snp_production.rego and fails when they differ.
#
# It exists so that the production appraisal logic (Secure Boot on, PCRs
# pinned, no debug, minimum TCB, measurement pinned) runs end to end on a
# machine without SEV-SNP. The simulated root is a file on the host: a
# verdict of this policy proves the guest's software, never its isolation.
# Never release production secrets under it. The checks, each a denial:
# snp_production.rego's header, with "sim-sev-snp" for "sev-snp".
package confidant.appraisal.sim_production

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

# tcb_part_ok holds when a part of one of the report's TCBs is at least
# the part of the reference minimum set for it.
tcb_part_ok(field, minimum, part) if input.tee[field][part] >= ref[minimum][part]

# measurement_known holds when the launch measurement is a reference value.
measurement_known if ref.measurements[input.tee.measurement]

ref := object.get(data.reference, "sim-sev-snp", {})

tcb_parts := ["bl", "tee", "snp", "microcode"]

# tcb_minimums names, for each TCB of the report, its field in input.tee
# and the reference minimum for it. minimum_tcb is required; the others
# apply when the reference sets them.
tcb_minimums := {
	"reported": {"field": "reported_tcb", "minimum": "minimum_tcb"},
	"launch": {"field": "launch_tcb", "minimum": "minimum_launch_tcb"},
	"committed": {"field": "committed_tcb", "minimum": "minimum_committed_tcb"},
	"current": {"field": "current_tcb", "minimum": "minimum_current_tcb"},
}

# minimum_parts are the parts a minimum is checked on: the four of every
# product line, and any other part the minimum names (a part the report
# lacks is then a denial, not a pass).
minimum_parts(minimum) := {part | some part in tcb_parts} | {part | some part, _ in ref[minimum]}

deny contains "evidence is not sim-sev-snp" if not input.kind == "sim-sev-snp"

deny contains "report was not verified against the simulated root" if not input.tee.simulated == true

deny contains "guest policy allows debugging" if not input.tee.policy.debug == false

deny contains "guest policy allows a migration agent" if not input.tee.policy.migration_agent == false

deny contains "SMT is allowed by the guest policy or enabled on the platform" if {
	smt_possible
	not ref.allow_smt == true
}

smt_possible if not input.tee.policy.smt == false

smt_possible if not input.tee.platform_info.smt_enabled == false

deny contains msg if {
	not input.tee.vmpl == 0
	msg := sprintf("report VMPL is %v, want 0", [object.get(tee, "vmpl", "missing")])
}

deny contains "no reference values for sim-sev-snp" if not data.reference["sim-sev-snp"]

# Minimum TCB.

deny contains "no reference value for sim-sev-snp.minimum_tcb" if not ref.minimum_tcb

deny contains msg if {
	some name, m in tcb_minimums
	m.minimum in object.keys(ref)
	some part in minimum_parts(m.minimum)
	not tcb_part_ok(m.field, m.minimum, part)
	msg := sprintf("%s TCB %s=%v is below the minimum %v", [
		name,
		part,
		object.get(tee, [m.field, part], "missing"),
		object.get(ref, [m.minimum, part], "missing"),
	])
}

# Launch measurement.

deny contains "no reference value for sim-sev-snp.measurements" if count(object.get(ref, "measurements", {})) == 0

deny contains msg if {
	count(ref.measurements) > 0
	not measurement_known
	msg := sprintf("measurement %v is not in the reference set", [object.get(tee, "measurement", "missing")])
}

# vTPM: secure boot and PCRs.

deny contains "no vTPM evidence" if not input.tpm

deny contains "secure boot is not enabled" if not input.tpm.secure_boot.enabled == true

deny contains "no reference value for sim-sev-snp.pcrs" if count(object.get(ref, "pcrs", {})) == 0

deny contains msg if {
	some bank, pcrs in ref.pcrs
	some index, allowed in pcrs
	not pcr_allowed(bank, index, allowed)
	msg := sprintf("PCR %s[%s] = %v is not a reference value", [bank, index, pcr_value(bank, index)])
}

default verdict := "affirming"

verdict := "contraindicated" if count(deny) > 0

claims["swname"] := ref.measurements[input.tee.measurement].name

result := {
	"verdict": verdict,
	"reasons": sort(deny),
	"claims": claims,
}
