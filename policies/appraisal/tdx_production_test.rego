package confidant.appraisal.tdx_production_test

import data.confidant.appraisal.tdx_production as p

hex48(b) := concat("", [b | some _ in numbers.range(1, 48)])

mrtd := hex48("aa")

rtmrs := [hex48("10"), hex48("11"), hex48("12"), hex48("00")]

reference := {"tdx": {
	"mrtd": [mrtd],
	"names": {mrtd: "confidant-tdx-firmware 1.0"},
	"rtmrs": {"0": [rtmrs[0]], "1": [rtmrs[1]], "2": [rtmrs[2]], "3": [rtmrs[3]]},
}}

good := {
	"kind": "tdx",
	"tee": {
		"kind": "tdx",
		"td_attributes": {"debug": false},
		"mrtd": mrtd,
		"rtmrs": rtmrs,
		"tcb_status": "UpToDate",
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
	p.kinds == {"tdx"}
}

test_good_evidence_is_affirmed if {
	r := decide(good, reference)
	r.verdict == "affirming"
	r.reasons == []
	r.claims == {"swname": "confidant-tdx-firmware 1.0"}
}

test_debug_denied if {
	denied_for(patched([{"op": "replace", "path": "/tee/td_attributes/debug", "value": true}]), reference, "TD attributes allow debugging")
}

test_debug_missing_denied if {
	denied_for(json.remove(good, ["tee/td_attributes"]), reference, "TD attributes allow debugging")
}

test_tcb_unknown_denied if {
	denied_for(patched([{"op": "replace", "path": "/tee/tcb_status", "value": "unknown"}]), reference, "TCB status is unknown, want UpToDate")
}

test_tcb_out_of_date_denied if {
	denied_for(patched([{"op": "replace", "path": "/tee/tcb_status", "value": "OutOfDate"}]), reference, "TCB status is OutOfDate, want UpToDate")
}

test_mrtd_mismatch_denied if {
	inp := patched([{"op": "replace", "path": "/tee/mrtd", "value": hex48("bb")}])
	denied_for(inp, reference, sprintf("MRTD %s is not in the reference set", [hex48("bb")]))
}

test_mrtd_missing_denied if {
	denied_for(json.remove(good, ["tee/mrtd"]), reference, "MRTD missing is not in the reference set")
}

test_rtmr_mismatch_denied if {
	every i in numbers.range(0, 3) {
		inp := patched([{"op": "replace", "path": sprintf("/tee/rtmrs/%d", [i]), "value": hex48("ff")}])
		denied_for(inp, reference, sprintf("RTMR%d %s is not in the reference set", [i, hex48("ff")]))
	}
}

test_rtmrs_missing_denied if {
	denied_for(json.remove(good, ["tee/rtmrs"]), reference, "RTMR0 missing is not in the reference set")
}

test_wrong_kind_denied if {
	denied_for(patched([{"op": "replace", "path": "/kind", "value": "sev-snp"}]), reference, "evidence is not tdx")
}

# A missing reference value is a denial, never a pass.

test_no_reference_values_denied if {
	r := decide(good, {})
	r.verdict == "contraindicated"
	"no reference values for tdx" in r.reasons
	"no reference value for tdx.mrtd" in r.reasons
	"no reference value for tdx.rtmrs[0]" in r.reasons
	"no reference value for tdx.rtmrs[3]" in r.reasons
}

test_rtmr_reference_missing_denied if {
	denied_for(good, json.remove(reference, ["tdx/rtmrs/2"]), "no reference value for tdx.rtmrs[2]")
}

test_empty_mrtd_reference_denied if {
	ref := json.patch(reference, [{"op": "replace", "path": "/tdx/mrtd", "value": []}])
	denied_for(good, ref, "no reference value for tdx.mrtd")
}

# vTPM evidence is optional for TDX, but checked when present.

test_tpm_pcrs_checked_when_present if {
	ref := json.patch(reference, [{"op": "add", "path": "/tdx/pcrs", "value": {"sha256": {"4": ["04"]}}}])
	ok := json.patch(good, [{"op": "add", "path": "/tpm", "value": {"pcrs": {"sha256": {"4": "04"}}}}])
	decide(ok, ref).verdict == "affirming"
	bad := json.patch(good, [{"op": "add", "path": "/tpm", "value": {"pcrs": {"sha256": {"4": "05"}}}}])
	denied_for(bad, ref, "PCR sha256[4] = 05 is not a reference value")
}

test_all_reasons_listed if {
	inp := patched([
		{"op": "replace", "path": "/tee/td_attributes/debug", "value": true},
		{"op": "replace", "path": "/tee/tcb_status", "value": "unknown"},
		{"op": "replace", "path": "/tee/mrtd", "value": hex48("bb")},
	])
	count(decide(inp, reference).reasons) == 3
}
