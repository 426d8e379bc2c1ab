package confidant.release.default_policy_test

import data.confidant.release.default_policy as p

key := {"name": "os-disk", "version": 1, "origin": "platform"}

good := {
	"iss": "https://verifier.example",
	"sub": "sev-snp:abcd",
	"status": "affirming",
	"dbgstat": 3,
	"hwmodel": "AMD SEV-SNP Milan",
	"tee": {"kind": "sev-snp", "simulated": false, "measurement": "aa"},
	"runtime": {"keys": {"keys": [{"kty": "RSA", "n": "x", "e": "AQAB"}]}},
}

decide(claims) := r if {
	r := p.result with input as claims with data.key as key
}

denied_for(claims, reason) if {
	r := decide(claims)
	r.allow == false
	reason in r.reasons
}

test_affirmed_snp_released if {
	r := decide(good)
	r.allow == true
	r.reasons == []
}

test_tdx_released if decide(json.patch(good, [{"op": "replace", "path": "/tee", "value": {"kind": "tdx"}}])).allow

test_warning_denied if denied_for(json.patch(good, [{"op": "replace", "path": "/status", "value": "warning"}]), "token status is warning, want affirming")

test_no_status_denied if denied_for(json.remove(good, ["status"]), "token status is missing, want affirming")

test_debug_denied if denied_for(json.patch(good, [{"op": "replace", "path": "/dbgstat", "value": 0}]), "debug status (dbgstat) is 0, want 3 (disabled permanently)")

test_simulated_denied if {
	claims := json.patch(good, [{"op": "replace", "path": "/tee", "value": {"kind": "sim-sev-snp", "simulated": true}}])
	denied_for(claims, "evidence came from the simulated TEE")
	denied_for(claims, "TEE kind is sim-sev-snp: the default policy releases only to SEV-SNP or TDX hardware")
}

test_simulated_flag_on_hardware_kind_denied if denied_for(json.patch(good, [{"op": "replace", "path": "/tee/simulated", "value": true}]), "evidence came from the simulated TEE")

test_no_tee_denied if denied_for(json.remove(good, ["tee"]), "TEE kind is missing: the default policy releases only to SEV-SNP or TDX hardware")

test_no_runtime_key_denied if {
	denied_for(json.patch(good, [{"op": "replace", "path": "/runtime/keys/keys", "value": []}]), "token carries no runtime key")
	denied_for(json.remove(good, ["runtime"]), "token carries no runtime key")
}

test_every_reason_listed if {
	r := decide({})
	r.allow == false
	count(r.reasons) == 4
}
