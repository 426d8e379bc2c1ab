package confidant.appraisal.sim_development_test

import data.confidant.appraisal.sim_development as p

measurement := concat("", ["aa" | some _ in numbers.range(1, 48)])

reference := {"sim-sev-snp": {
	"measurements": {measurement: {"name": "confidant-dev"}},
	"pcrs": {"sha256": {"9": ["09"]}},
}}

good := {
	"kind": "sim-sev-snp",
	"tee": {
		"kind": "sim-sev-snp",
		"simulated": true,
		"policy": {"debug": false, "migration_agent": false, "smt": true},
		"vmpl": 0,
		"measurement": measurement,
	},
	"tpm": {
		"pcrs": {"sha256": {"9": "09"}},
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
	r.claims == {"swname": "confidant-dev", "development": true}
}

test_secure_boot_off_warns if {
	r := decide(patched([{"op": "replace", "path": "/tpm/secure_boot", "value": {"known": false, "enabled": false}}]), reference)
	r.verdict == "warning"
	r.reasons == ["secure boot is not enabled"]
}

test_unpinned_pcrs_warn if {
	r := decide(good, json.remove(reference, ["sim-sev-snp/pcrs"]))
	r.verdict == "warning"
	r.reasons == ["no PCR is pinned by reference values"]
}

test_warnings_do_not_hide_denials if {
	inp := patched([
		{"op": "replace", "path": "/tee/policy/debug", "value": true},
		{"op": "replace", "path": "/tpm/secure_boot/enabled", "value": false},
	])
	r := decide(inp, reference)
	r.verdict == "contraindicated"
	r.reasons == ["guest policy allows debugging", "secure boot is not enabled"]
}

test_not_simulated_denied if {
	denied_for(patched([{"op": "replace", "path": "/tee/simulated", "value": false}]), reference, "report was not verified against the simulated root")
}

test_wrong_kind_denied if {
	denied_for(patched([{"op": "replace", "path": "/kind", "value": "sev-snp"}]), reference, "evidence is not sim-sev-snp")
}

test_debug_denied if {
	denied_for(patched([{"op": "replace", "path": "/tee/policy/debug", "value": true}]), reference, "guest policy allows debugging")
}

test_migration_agent_denied if {
	denied_for(patched([{"op": "replace", "path": "/tee/policy/migration_agent", "value": true}]), reference, "guest policy allows a migration agent")
}

test_vmpl_denied if {
	denied_for(patched([{"op": "replace", "path": "/tee/vmpl", "value": 3}]), reference, "report VMPL is 3, want 0")
}

test_measurement_mismatch_denied if {
	other := concat("", ["cc" | some _ in numbers.range(1, 48)])
	denied_for(patched([{"op": "replace", "path": "/tee/measurement", "value": other}]), reference, sprintf("measurement %s is not in the reference set", [other]))
}

test_no_tpm_denied if {
	denied_for(json.remove(good, ["tpm"]), reference, "no vTPM evidence")
}

test_pcr_mismatch_denied if {
	denied_for(patched([{"op": "replace", "path": "/tpm/pcrs/sha256/9", "value": "10"}]), reference, "PCR sha256[9] = 10 is not a reference value")
}

test_pcr_missing_denied if {
	denied_for(json.remove(good, ["tpm/pcrs/sha256/9"]), reference, "PCR sha256[9] = missing is not a reference value")
}

test_no_reference_values_denied if {
	r := decide(good, {})
	r.verdict == "contraindicated"
	"no reference values for sim-sev-snp" in r.reasons
	"no reference value for sim-sev-snp.measurements" in r.reasons
}
