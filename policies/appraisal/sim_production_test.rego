# The tests of snp_production_test.rego, for sim_production: the same
# evidence with the simulated root as the trusted chain.
package confidant.appraisal.sim_production_test

import data.confidant.appraisal.sim_production as p

measurement := concat("", ["aa" | some _ in numbers.range(1, 48)])

other_measurement := concat("", ["bb" | some _ in numbers.range(1, 48)])

pcr4 := concat("", ["04" | some _ in numbers.range(1, 32)])

pcr7 := concat("", ["07" | some _ in numbers.range(1, 32)])

reference := {"sim-sev-snp": {
	"allow_smt": true,
	"minimum_tcb": {"bl": 3, "tee": 0, "snp": 14, "microcode": 209},
	"measurements": {measurement: {"name": "confidant-os 1.0"}},
	"pcrs": {"sha256": {"4": [pcr4], "7": [pcr7]}},
}}

good := {
	"kind": "sim-sev-snp",
	"tee": {
		"kind": "sim-sev-snp",
		"simulated": true,
		"product": "Milan",
		"policy": {"debug": false, "migration_agent": false, "smt": true},
		"platform_info": {"smt_enabled": true},
		"vmpl": 0,
		# A host after a runtime microcode and SNP firmware update: current
		# above committed, reported and launch.
		"current_tcb": {"bl": 4, "tee": 0, "snp": 23, "microcode": 218},
		"reported_tcb": {"bl": 4, "tee": 0, "snp": 22, "microcode": 213},
		"committed_tcb": {"bl": 4, "tee": 0, "snp": 22, "microcode": 213},
		"launch_tcb": {"bl": 4, "tee": 0, "snp": 22, "microcode": 213},
		"measurement": measurement,
	},
	"tpm": {
		"pcrs": {"sha256": {"0": "00", "4": pcr4, "7": pcr7}},
		"secure_boot": {"known": true, "enabled": true},
	},
	"runtime": {},
}

patched(ops) := json.patch(good, ops)

decide(inp, ref) := r if {
	r := p.result with input as inp with data.reference as ref
}

denied_for(inp, ref, reason) if {
	r := decide(inp, ref)
	r.verdict == "contraindicated"
	reason in r.reasons
}

test_kinds if {
	p.kinds == {"sim-sev-snp"}
}

test_good_evidence_is_affirmed if {
	r := decide(good, reference)
	r.verdict == "affirming"
	r.reasons == []
	r.claims == {"swname": "confidant-os 1.0"}
}

test_debug_denied if {
	denied_for(patched([{"op": "replace", "path": "/tee/policy/debug", "value": true}]), reference, "guest policy allows debugging")
}

test_debug_missing_denied if {
	denied_for(patched([{"op": "remove", "path": "/tee/policy/debug"}]), reference, "guest policy allows debugging")
}

test_migration_agent_denied if {
	denied_for(patched([{"op": "replace", "path": "/tee/policy/migration_agent", "value": true}]), reference, "guest policy allows a migration agent")
}

test_smt_denied_unless_allowed if {
	smt := "SMT is allowed by the guest policy or enabled on the platform"
	no_allow := json.remove(reference, ["sim-sev-snp/allow_smt"])
	denied_for(good, no_allow, smt)
	denied_for(good, json.patch(reference, [{"op": "replace", "path": "/sim-sev-snp/allow_smt", "value": "yes"}]), smt)
	policy_only := patched([{"op": "replace", "path": "/tee/platform_info/smt_enabled", "value": false}])
	denied_for(policy_only, no_allow, smt)
	platform_only := patched([{"op": "replace", "path": "/tee/policy/smt", "value": false}])
	denied_for(platform_only, no_allow, smt)
	no_smt := patched([
		{"op": "replace", "path": "/tee/policy/smt", "value": false},
		{"op": "replace", "path": "/tee/platform_info/smt_enabled", "value": false},
	])
	decide(no_smt, no_allow).verdict == "affirming"
}

test_vmpl_denied if {
	denied_for(patched([{"op": "replace", "path": "/tee/vmpl", "value": 2}]), reference, "report VMPL is 2, want 0")
}

test_hardware_root_denied if {
	denied_for(patched([{"op": "replace", "path": "/tee/simulated", "value": false}]), reference, "report was not verified against the simulated root")
}

test_simulated_missing_denied if {
	denied_for(patched([{"op": "remove", "path": "/tee/simulated"}]), reference, "report was not verified against the simulated root")
}

test_other_kind_denied if {
	denied_for(patched([{"op": "replace", "path": "/kind", "value": "sim-sim-sev-snp"}]), reference, "evidence is not sim-sev-snp")
}

test_tcb_below_minimum_denied if {
	inp := patched([{"op": "replace", "path": "/tee/reported_tcb/snp", "value": 13}])
	denied_for(inp, reference, "reported TCB snp=13 is below the minimum 14")
}

test_tcb_each_part_checked if {
	every part in ["bl", "tee", "snp", "microcode"] {
		inp := patched([{"op": "replace", "path": concat("/", ["", "tee", "reported_tcb", part]), "value": -1}])
		r := decide(inp, reference)
		r.verdict == "contraindicated"
	}
}

# Minimums over the launch, committed and current TCBs: optional, and
# checked like minimum_tcb when the reference sets them.

with_minimum(name, minimum) := json.patch(reference, [{"op": "add", "path": concat("/", ["", "sim-sev-snp", name]), "value": minimum}])

test_current_tcb_above_committed_affirmed if {
	ref := json.patch(reference, [
		{"op": "add", "path": "/sim-sev-snp/minimum_launch_tcb", "value": {"bl": 4, "tee": 0, "snp": 22, "microcode": 213}},
		{"op": "add", "path": "/sim-sev-snp/minimum_committed_tcb", "value": {"bl": 4, "tee": 0, "snp": 22, "microcode": 213}},
		{"op": "add", "path": "/sim-sev-snp/minimum_current_tcb", "value": {"bl": 4, "tee": 0, "snp": 23, "microcode": 218}},
	])
	r := decide(good, ref)
	r.verdict == "affirming"
	r.reasons == []
}

test_committed_tcb_below_minimum_denied if {
	ref := with_minimum("minimum_committed_tcb", {"bl": 4, "tee": 0, "snp": 23, "microcode": 213})
	denied_for(good, ref, "committed TCB snp=22 is below the minimum 23")
}

test_launch_tcb_below_minimum_denied if {
	ref := with_minimum("minimum_launch_tcb", {"bl": 4, "tee": 0, "snp": 22, "microcode": 214})
	denied_for(good, ref, "launch TCB microcode=213 is below the minimum 214")
}

test_current_tcb_below_minimum_denied if {
	ref := with_minimum("minimum_current_tcb", {"bl": 5, "tee": 0, "snp": 0, "microcode": 0})
	denied_for(good, ref, "current TCB bl=4 is below the minimum 5")
}

test_every_tcb_every_part_checked if {
	every field in ["reported_tcb", "launch_tcb", "committed_tcb", "current_tcb"] {
		every part in ["bl", "tee", "snp", "microcode"] {
			ref := json.patch(reference, [
				{"op": "add", "path": "/sim-sev-snp/minimum_launch_tcb", "value": {"bl": 0, "tee": 0, "snp": 0, "microcode": 0}},
				{"op": "add", "path": "/sim-sev-snp/minimum_committed_tcb", "value": {"bl": 0, "tee": 0, "snp": 0, "microcode": 0}},
				{"op": "add", "path": "/sim-sev-snp/minimum_current_tcb", "value": {"bl": 0, "tee": 0, "snp": 0, "microcode": 0}},
			])
			decide(good, ref).verdict == "affirming"
			inp := patched([{"op": "replace", "path": concat("/", ["", "tee", field, part]), "value": -1}])
			decide(inp, ref).verdict == "contraindicated"
		}
	}
}

test_tcb_missing_from_report_denied if {
	inp := json.remove(good, ["tee/launch_tcb"])
	ref := with_minimum("minimum_launch_tcb", {"bl": 0, "tee": 0, "snp": 0, "microcode": 0})
	denied_for(inp, ref, "launch TCB bl=missing is below the minimum 0")
}

test_minimum_part_missing_denied if {
	ref := with_minimum("minimum_committed_tcb", {"bl": 0, "tee": 0, "snp": 0})
	denied_for(good, ref, "committed TCB microcode=213 is below the minimum missing")
}

test_minimum_not_an_object_denied if {
	every value in ["yes", false, 0, null] {
		r := decide(good, with_minimum("minimum_committed_tcb", value))
		r.verdict == "contraindicated"
		"committed TCB bl=4 is below the minimum missing" in r.reasons
	}
}

# A part the minimum names beyond the four (e.g. Turin's FMC) is checked
# too; a report without it is denied.
test_minimum_extra_part_checked if {
	ref := json.patch(reference, [{"op": "add", "path": "/sim-sev-snp/minimum_tcb/fmc", "value": 1}])
	denied_for(good, ref, "reported TCB fmc=missing is below the minimum 1")
	with_fmc := patched([{"op": "add", "path": "/tee/reported_tcb/fmc", "value": 1}])
	decide(with_fmc, ref).verdict == "affirming"
}

test_measurement_not_in_reference_denied if {
	inp := patched([{"op": "replace", "path": "/tee/measurement", "value": other_measurement}])
	denied_for(inp, reference, sprintf("measurement %s is not in the reference set", [other_measurement]))
}

test_no_tpm_denied if {
	denied_for(json.remove(good, ["tpm"]), reference, "no vTPM evidence")
}

test_secure_boot_off_denied if {
	denied_for(patched([{"op": "replace", "path": "/tpm/secure_boot/enabled", "value": false}]), reference, "secure boot is not enabled")
}

test_pcr_mismatch_denied if {
	inp := patched([{"op": "replace", "path": "/tpm/pcrs/sha256/4", "value": "ff"}])
	denied_for(inp, reference, "PCR sha256[4] = ff is not a reference value")
}

test_pcr_missing_denied if {
	inp := patched([{"op": "remove", "path": "/tpm/pcrs/sha256/7"}])
	denied_for(inp, reference, "PCR sha256[7] = missing is not a reference value")
}

# A missing reference value is a denial, never a pass.

test_no_reference_values_denied if {
	r := decide(good, {})
	r.verdict == "contraindicated"
	"no reference values for sim-sev-snp" in r.reasons
	"no reference value for sim-sev-snp.minimum_tcb" in r.reasons
	"no reference value for sim-sev-snp.measurements" in r.reasons
	"no reference value for sim-sev-snp.pcrs" in r.reasons
}

test_no_minimum_tcb_denied if {
	denied_for(good, json.remove(reference, ["sim-sev-snp/minimum_tcb"]), "no reference value for sim-sev-snp.minimum_tcb")
}

test_minimum_tcb_part_missing_denied if {
	denied_for(good, json.remove(reference, ["sim-sev-snp/minimum_tcb/snp"]), "reported TCB snp=22 is below the minimum missing")
}

test_empty_measurements_denied if {
	ref := json.patch(reference, [{"op": "replace", "path": "/sim-sev-snp/measurements", "value": {}}])
	denied_for(good, ref, "no reference value for sim-sev-snp.measurements")
}

test_no_pcrs_denied if {
	denied_for(good, json.remove(reference, ["sim-sev-snp/pcrs"]), "no reference value for sim-sev-snp.pcrs")
}

# Every reason is listed, not only the first.

test_all_reasons_listed if {
	inp := patched([
		{"op": "replace", "path": "/tee/policy/debug", "value": true},
		{"op": "replace", "path": "/tee/vmpl", "value": 1},
		{"op": "replace", "path": "/tee/measurement", "value": other_measurement},
		{"op": "replace", "path": "/tpm/secure_boot/enabled", "value": false},
	])
	r := decide(inp, reference)
	r.verdict == "contraindicated"
	count(r.reasons) == 4
}
