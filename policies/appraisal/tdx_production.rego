# Intel TDX production appraisal policy.
#
# Affirms a TD only when:
#   - TD_ATTRIBUTES.DEBUG is off;
#   - MRTD is in data.reference.tdx.mrtd;
#   - each RTMR 0-3 is one of data.reference.tdx.rtmrs["0".."3"];
#   - Intel's collateral rates the TCB "UpToDate" (offline verification
#     leaves it "unknown", which is denied);
#   - vTPM evidence, when present, matches data.reference.tdx.pcrs if given.
# A missing reference value is a denial. Every failed check is reported.
package confidant.appraisal.tdx_production

kinds := {"tdx"}

# tee is the verified TEE fields (an empty object if absent, so that
# messages can always be built).
tee := object.get(input, "tee", {})

# pcr_value is a quoted PCR value, or "missing".
pcr_value(bank, index) := v if {
	v := input.tpm.pcrs[bank][index]
} else := "missing"

# rtmr_value is an RTMR of the quote, or "missing".
rtmr_value(i) := v if {
	v := input.tee.rtmrs[i]
} else := "missing"

# Checks are positive helper rules, negated where used: Rego lifts a
# reference out of "not x in xs" and "not x >= y", so such an expression
# over an undefined value would not fire. "not helper(...)" always does.

# pcr_allowed holds when the quoted PCR has one of the allowed values.
pcr_allowed(bank, index, allowed) if input.tpm.pcrs[bank][index] in allowed

# mrtd_known holds when MRTD is a reference value.
mrtd_known if input.tee.mrtd in ref.mrtd

# rtmr_allowed holds when RTMR i has one of the allowed values.
rtmr_allowed(i, allowed) if input.tee.rtmrs[i] in allowed

ref := object.get(data.reference, "tdx", {})

deny contains "evidence is not tdx" if not input.kind == "tdx"

deny contains "TD attributes allow debugging" if not input.tee.td_attributes.debug == false

deny contains "no reference values for tdx" if not data.reference.tdx

deny contains msg if {
	not input.tee.tcb_status == "UpToDate"
	msg := sprintf("TCB status is %v, want UpToDate", [object.get(tee, "tcb_status", "missing")])
}

# MRTD.

deny contains "no reference value for tdx.mrtd" if count(object.get(ref, "mrtd", [])) == 0

deny contains msg if {
	count(ref.mrtd) > 0
	not mrtd_known
	msg := sprintf("MRTD %v is not in the reference set", [object.get(tee, "mrtd", "missing")])
}

# RTMRs, each pinned.

deny contains msg if {
	some i in numbers.range(0, 3)
	count(object.get(object.get(ref, "rtmrs", {}), format_int(i, 10), [])) == 0
	msg := sprintf("no reference value for tdx.rtmrs[%d]", [i])
}

deny contains msg if {
	some i in numbers.range(0, 3)
	allowed := ref.rtmrs[format_int(i, 10)]
	count(allowed) > 0
	not rtmr_allowed(i, allowed)
	msg := sprintf("RTMR%d %v is not in the reference set", [i, rtmr_value(i)])
}

# Optional vTPM evidence.

deny contains msg if {
	input.tpm
	some bank, pcrs in object.get(ref, "pcrs", {})
	some index, allowed in pcrs
	not pcr_allowed(bank, index, allowed)
	msg := sprintf("PCR %s[%s] = %v is not a reference value", [bank, index, pcr_value(bank, index)])
}

default verdict := "affirming"

verdict := "contraindicated" if count(deny) > 0

claims["swname"] := ref.names[input.tee.mrtd]

result := {
	"verdict": verdict,
	"reasons": sort(deny),
	"claims": claims,
}
