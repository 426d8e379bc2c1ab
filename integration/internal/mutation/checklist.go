package mutation

// Packages whose tests the mutations name.
const (
	pkgSNP       = "./shared/tee/snp"
	pkgTDX       = "./shared/tee/tdx"
	pkgTPM       = "./shared/tpm"
	pkgKeywrap   = "./shared/keywrap"
	pkgChallenge = "./verifier/internal/challenge"
	pkgStore     = "./verifier/internal/store"
	pkgAppraise  = "./verifier/internal/appraise"
	pkgToken     = "./verifier/internal/token"
	pkgRelease   = "./verifier/internal/release"
	pkgServer    = "./verifier/internal/server"
	pkgPolicies  = "./policies"
)

// Source directories holding the checks.
const (
	dirSNP       = "shared/tee/snp"
	dirTDX       = "shared/tee/tdx"
	dirTPM       = "shared/tpm"
	dirKeywrap   = "shared/keywrap"
	dirChallenge = "verifier/internal/challenge"
	dirStore     = "verifier/internal/store"
	dirAppraise  = "verifier/internal/appraise"
	dirToken     = "verifier/internal/token"
	dirRelease   = "verifier/internal/release"
	dirAPI       = "verifier/internal/api"
	dirAttest    = "verifier/internal/attest"
	dirAppraisal = "policies/appraisal"
)

// off turns the condition cond of "if cond {" off.
func off(dir, cond string) Edit {
	return Edit{Dir: dir, Old: "if " + cond + " {", New: "if false && (" + cond + ") {"}
}

// Checklist is one mutation per check of the DESIGN.md verifier
// checklist, each naming the tests that must notice its removal.
func Checklist() []Mutation {
	return append(append(append(freshness(), snpChecks()...), append(tdxChecks(), tpmChecks()...)...),
		append(referenceChecks(), append(tokenChecks(), releaseChecks()...)...)...)
}

func freshness() []Mutation {
	return []Mutation{
		{Item: "freshness: unknown nonce", Name: "nonce MAC not checked",
			Edits: []Edit{off(dirChallenge, "!hmac.Equal(s.tag(body), nonce[RandomSize+expirySize:])")},
			Pkg:   pkgServer, Run: "^TestFreshness$"},
		{Item: "freshness: expired nonce", Name: "nonce expiry not checked",
			Edits: []Edit{off(dirChallenge, "!now.Before(expires)")},
			Pkg:   pkgServer, Run: "^TestFreshness$"},
		{Item: "freshness: expiry beyond the TTL", Name: "nonce expiry not bounded by the TTL",
			Edits: []Edit{{Dir: dirChallenge, Old: "if latest := now.Add(s.ttl + s.skew); expires.After(latest) {",
				New: "if latest := now.Add(s.ttl + s.skew); false && expires.After(latest) {"}},
			Pkg: pkgChallenge, Run: "^TestRedeem$"},
		{Item: "freshness: reused nonce", Name: "SQLite nonce insert conflict ignored",
			Edits: []Edit{{Dir: dirStore, Old: "\tif n == 0 {\n\t\treturn fmt.Errorf(\"redeeming nonce: %w\", ErrNonceReused)",
				New: "\tif false && n == 0 {\n\t\treturn fmt.Errorf(\"redeeming nonce: %w\", ErrNonceReused)"}},
			Pkg: pkgServer, Run: "^TestFreshness$"},
	}
}

func snpChecks() []Mutation {
	return []Mutation{
		{Item: "REPORT_DATA = SHA-512(runtime data)", Name: "appraise binding compare removed",
			Edits: []Edit{off(dirAppraise, "subtle.ConstantTimeCompare(got, want[:]) != 1")},
			Pkg:   pkgAppraise, Run: "^TestCheckReportData$"},
		{Item: "REPORT_DATA = SHA-512(runtime data)", Name: "SNP ReportData option ignored",
			Edits: []Edit{off(dirSNP, "opts.ReportData != nil && !bytes.Equal(r.GetReportData(), opts.ReportData)")},
			Pkg:   pkgSNP, Run: "^TestVerifyMilanOptions$"},
		{Item: "report signature; VCEK chain to a pinned root", Name: "go-sev-guest verification result ignored",
			Edits: []Edit{{Dir: dirSNP, Old: "if err := verify.SnpAttestation(att, vopts); err != nil {",
				New: "if err := verify.SnpAttestation(att, vopts); false && err != nil {"}},
			Pkg: pkgSNP, Run: "^(TestVerifyMilanTampered|TestVerifySimulatedRejected)$"},
		{Item: "report signature (cached chain)", Name: "signature not checked on a cached chain",
			Edits: []Edit{{Dir: dirSNP, Old: "if err := verify.SnpProtoReportSignature(att.GetReport(), v.ek); err != nil {",
				New: "if err := verify.SnpProtoReportSignature(att.GetReport(), v.ek); false && err != nil {"}},
			Pkg: pkgSNP, Run: "^TestChainCacheStillChecks$"},
		{Item: "VCEK chain valid at Now (cached chain)", Name: "cached chain validity not checked",
			Edits: []Edit{off(dirSNP, "!v.validAt(now)")},
			Pkg:   pkgSNP, Run: "^TestChainCacheStillChecks$"},
		{Item: "product line matches", Name: "product line not compared",
			Edits: []Edit{off(dirSNP, `opts.Product != "" && product != opts.Product`)},
			Pkg:   pkgSNP, Run: "^(TestVerifyMilanOptions|TestChainCacheProductLine)$"},
		{Item: "reported TCB equals the VCEK's TCB", Name: "reported TCB not compared with the VCEK",
			Edits: []Edit{off(dirSNP, "reported != certTCB")},
			Pkg:   pkgSNP, Run: "^TestVerifyTCBRules$"},
		{Item: "committed TCB <= current TCB", Name: "committed/current comparison removed",
			Edits: []Edit{off(dirSNP, "!kds.TCBPartsLE(committed, current)")},
			Pkg:   pkgSNP, Run: "^TestVerifyTCBRules$"},
		{Item: "debug policy bit", Name: "SNP debug bit allowed",
			Edits: []Edit{off(dirSNP, "policy.Debug && !opts.AllowDebug")},
			Pkg:   pkgSNP, Run: "^(TestVerifyMilanDefaultOptionsRejectDebug|TestVerifyMilanOptions)$"},
		{Item: "migration-agent policy bit", Name: "SNP migration agent allowed",
			Edits: []Edit{off(dirSNP, "policy.MigrateMA && !opts.AllowMigrationAgent")},
			Pkg:   pkgSNP, Run: "^(TestVerifyMilanOptions|TestVerifySimulatedRejected)$"},
		{Item: "SMT policy bit (guest policy)", Name: "SNP guest-policy SMT allowed",
			Edits: []Edit{off(dirSNP, "policy.SMT")},
			Pkg:   pkgSNP, Run: "^(TestGuestPolicySMTRefused|TestVerifySimulatedRejected)$"},
		{Item: "SMT (platform info)", Name: "SNP platform-info SMT branch removed",
			Edits: []Edit{{Dir: dirSNP, Old: "} else if decodePlatformInfo(r.GetPlatformInfo()).SMTEnabled {",
				New: "} else if false && decodePlatformInfo(r.GetPlatformInfo()).SMTEnabled {"}},
			Pkg: pkgSNP, Run: "^Test.*SMT|^TestVerifySimulatedRejected$"},
		{Item: "VMPL", Name: "SNP VMPL not compared",
			Edits: []Edit{off(dirSNP, "r.GetVmpl() != uint32(wantVMPL)")},
			Pkg:   pkgSNP, Run: "^(TestVerifyMilanOptions|TestVerifySimulatedRejected)$"},
		{Item: "report version", Name: "SNP report version range not checked",
			Edits: []Edit{off(dirSNP, "version < minVersion || version < abi.MinSupportedReportVersion || version > abi.MaxSupportedReportVersion")},
			Pkg:   pkgSNP, Run: "^(TestVerifyMilanTampered|TestVerifyMilanOptions|TestVerifySimulatedRejected)$"},
		{Item: "debug, migration-agent, SMT, VMPL (production policy)", Name: "snp_production: debug deny removed",
			Edits: []Edit{{Dir: dirAppraisal, File: "snp_production.rego", Old: `deny contains "guest policy allows debugging" if not input.tee.policy.debug == false`,
				New: `# removed`}},
			Pkg: pkgPolicies, Run: "^TestRegoPolicies$"},
		{Item: "debug, migration-agent, SMT, VMPL (production policy)", Name: "snp_production: SMT deny removed",
			Edits: []Edit{{Dir: dirAppraisal, File: "snp_production.rego", Old: "\tsmt_possible\n\tnot ref.allow_smt == true\n", New: "\tsmt_possible\n\tnot ref.allow_smt == true\n\tfalse\n"}},
			Pkg:   pkgPolicies, Run: "^TestRegoPolicies$"},
		{Item: "debug, migration-agent, SMT, VMPL (production policy)", Name: "snp_production: VMPL deny removed",
			Edits: []Edit{{Dir: dirAppraisal, File: "snp_production.rego", Old: "\tnot input.tee.vmpl == 0\n", New: "\tnot input.tee.vmpl == 0\n\tfalse\n"}},
			Pkg:   pkgPolicies, Run: "^TestRegoPolicies$"},
	}
}

func tdxChecks() []Mutation {
	return []Mutation{
		{Item: "TDX: quote signature, PCK chain", Name: "go-tdx-guest offline verification result ignored",
			Edits: []Edit{{Dir: dirTDX, Old: "sigErr := verifyOffline(q, roots, at)\n", New: "sigErr := verifyOffline(q, roots, at)\n\tsigErr = nil\n"}},
			Pkg:   pkgTDX, Run: "^TestVerifyRejects$"},
		{Item: "TDX: PCK chain to the pinned root", Name: "configured roots not passed to go-tdx-guest",
			Edits: []Edit{{Dir: dirTDX, Old: "verify.TdxQuote(q, &verify.Options{TrustedRoots: roots, Now: timeSet(at)})",
				New: "verify.TdxQuote(q, &verify.Options{TrustedRoots: nil, Now: timeSet(at)})"}},
			Pkg: pkgTDX, Run: "^TestVerifyRejects$"},
		{Item: "TDX: TCB status", Name: "collateral verification result ignored",
			Edits: []Edit{{Dir: dirTDX, Old: "if err := verifyCollateral(ctx, q, roots, at, opts.Getter); err != nil {",
				New: "if err := verifyCollateral(ctx, q, roots, at, opts.Getter); false && err != nil {"}},
			Pkg: pkgTDX, Run: "^TestVerifyWithCollateral$"},
		{Item: "TDX: TCB status", Name: "RequireUpToDate without collateral accepted",
			Edits: []Edit{off(dirTDX, "opts.RequireUpToDate && opts.Getter == nil")},
			Pkg:   pkgTDX, Run: "^(TestVerifyRejects|TestVerifyWithCollateral)$"},
		{Item: "TDX: TD_ATTRIBUTES.DEBUG", Name: "debug TD allowed",
			Edits: []Edit{off(dirTDX, "v&attrDebug != 0 && !allowDebug")},
			Pkg:   pkgTDX, Run: "^(TestVerifyRejects|TestValidateClaims)$"},
	}
}

func tpmChecks() []Mutation {
	return []Mutation{
		{Item: "TPM quote signed by the AK from the runtime data", Name: "AK public area not compared",
			Edits: []Edit{off(dirTPM, "!ok || !eq.Equal(want)")},
			Pkg:   pkgTPM, Run: "^TestVerifyRejects$"},
		{Item: "TPM quote signed by the AK from the runtime data", Name: "quote signature result ignored",
			Edits: []Edit{{Dir: dirTPM, Old: "\tif !ok {\n\t\treturn 0, fmt.Errorf(\"checking quote signature: %w\", ErrSignature)",
				New: "\tif false && !ok {\n\t\treturn 0, fmt.Errorf(\"checking quote signature: %w\", ErrSignature)"}},
			Pkg: pkgTPM, Run: "^TestVerifyRejects$"},
		{Item: "quote extraData", Name: "extraData not compared",
			Edits: []Edit{off(dirTPM, "subtle.ConstantTimeCompare(ad.ExtraData, extraData) != 1")},
			Pkg:   pkgTPM, Run: "^TestVerifyRejects$"},
		{Item: "PCR digest matches the quoted PCRs", Name: "PCR digest not compared",
			Edits: []Edit{off(dirTPM, "subtle.ConstantTimeCompare(h.Sum(nil), info.PCRDigest) != 1")},
			Pkg:   pkgTPM, Run: "^(TestVerifyRejects|TestPCRDigest.*)$"},
		{Item: "event log replays to the PCRs", Name: "replay result ignored",
			Edits: []Edit{{Dir: dirTPM, Old: "res, err := replayLog(att.GetEventLog(), quoted[i], opts.AllowEmptyEventLog, i == 0, opts.LogCache)\n\t\tif err != nil {",
				New: "res, err := replayLog(att.GetEventLog(), quoted[i], opts.AllowEmptyEventLog, i == 0, opts.LogCache)\n\t\tif false && err != nil {"}},
			Pkg: pkgTPM, Run: "^(TestVerifyRejects|TestVerifyEventLog.*)$"},
		{Item: "malformed event log is an error, never a panic", Name: "panic recovery removed",
			Edits: []Edit{
				{Dir: dirTPM, Old: "if r := recover(); r != nil {\n\t\t\tres, err = logResult{}", New: "if r := any(nil); r != nil {\n\t\t\tres, err = logResult{}"},
				{Dir: dirTPM, Old: "if r := recover(); r != nil {\n\t\t\tclaims, err = nil", New: "if r := any(nil); r != nil {\n\t\t\tclaims, err = nil"},
			},
			Pkg: pkgTPM, Run: "^(TestVerifyEventLog.*|FuzzVerifyEventLog)$",
			SecondLine: "no known input makes go-eventlog panic behind the event-type guard (tests assert that nothing is refused only by a recovered panic; 150 s of fuzzing with the recovers removed found none)"},
		{Item: "malformed event log is an error, never a panic", Name: "unknown event types reach the claim extractor",
			Edits: []Edit{{Dir: dirTPM, Old: "if _, err := tcg.UntrustedParseEventType(uint32(e.Type)); err != nil {",
				New: "if _, err := tcg.UntrustedParseEventType(uint32(e.Type)); false && err != nil {"}},
			Pkg: pkgTPM, Run: "^(TestVerifyEventLog.*|TestVerifyRejects)$"},
	}
}

func referenceChecks() []Mutation {
	return []Mutation{
		{Item: "measurements against reference values", Name: "snp_production: unknown measurement allowed",
			Edits: []Edit{{Dir: dirAppraisal, File: "snp_production.rego", Old: "\tcount(ref.measurements) > 0\n\tnot measurement_known\n", New: "\tcount(ref.measurements) > 0\n\tnot measurement_known\n\tfalse\n"}},
			Pkg:   pkgPolicies, Run: "^TestRegoPolicies$"},
		{Item: "measurements against reference values", Name: "tdx_production: unknown MRTD allowed",
			Edits: []Edit{{Dir: dirAppraisal, File: "tdx_production.rego", Old: "\tcount(ref.mrtd) > 0\n\tnot mrtd_known\n", New: "\tcount(ref.mrtd) > 0\n\tnot mrtd_known\n\tfalse\n"}},
			Pkg:   pkgPolicies, Run: "^TestRegoPolicies$"},
		{Item: "measurements against reference values", Name: "sim_development: unknown measurement allowed (through the HTTP handler)",
			Edits: []Edit{{Dir: dirAppraisal, File: "sim_development.rego", Old: "\tcount(ref.measurements) > 0\n\tnot measurement_known\n", New: "\tcount(ref.measurements) > 0\n\tnot measurement_known\n\tfalse\n"}},
			Pkg:   pkgServer, Run: "^TestChecklist$"},
		{Item: "no reference value means deny", Name: "sim_development: empty measurement set allowed (through the HTTP handler)",
			Edits: []Edit{{Dir: dirAppraisal, File: "sim_development.rego", Old: `deny contains "no reference value for sim-sev-snp.measurements" if count(object.get(ref, "measurements", {})) == 0`,
				New: `# removed`}},
			Pkg: pkgServer, Run: "^TestNoReferenceValueDenies$"},
		{Item: "no reference value means deny", Name: "snp_production: empty measurement set allowed",
			Edits: []Edit{{Dir: dirAppraisal, File: "snp_production.rego", Old: `deny contains "no reference value for sev-snp.measurements" if count(object.get(ref, "measurements", {})) == 0`,
				New: `# removed`}},
			Pkg: pkgPolicies, Run: "^TestRegoPolicies$"},
		{Item: "no reference value means deny", Name: "snp_production: missing sev-snp reference allowed",
			Edits: []Edit{{Dir: dirAppraisal, File: "snp_production.rego", Old: `deny contains "no reference values for sev-snp" if not data.reference["sev-snp"]`, New: `# removed`}},
			Pkg:   pkgPolicies, Run: "^TestRegoPolicies$"},
	}
}

func tokenChecks() []Mutation {
	return []Mutation{
		{Item: "token: pinned algorithm allow-list, no alg:none", Name: "allow-list not checked",
			Edits: []Edit{off(dirToken, "err != nil || !slices.Contains(AllowedAlgorithms, alg)")},
			Pkg:   pkgToken, Run: "^(TestVerifyRejects|TestVerifyRegisteredClaims)$",
			SecondLine: "every published kid has an allowed algorithm, and the header's alg must equal its key's (the next mutation) and jws.VerifyCompactFast's"},
		{Item: "token: pinned algorithm allow-list, no alg:none", Name: "header alg not matched to the key's",
			Edits: []Edit{off(dirToken, "vk.alg.String() != alg")},
			Pkg:   pkgToken, Run: "^(TestVerifyRejects|TestVerifyRegisteredClaims)$"},
		{Item: "token: kid from our JWKS", Name: "any kid verified with the current key",
			Edits: []Edit{{Dir: dirToken, Old: "vk, ok := i.keys.verifyingKey(kid)", New: "vk, ok := i.keys.verifyingKey(i.keys.CurrentKID())"}},
			Pkg:   pkgToken, Run: "^(TestVerifyRejects|TestRotation)$"},
		{Item: "token: exp", Name: "exp not checked",
			Edits: []Edit{{Dir: dirToken, Old: "func(exp int64) bool { return now < exp+skew }", New: "func(exp int64) bool { return true }"}},
			Pkg:   pkgToken, Run: "^TestVerifyRegisteredClaims$"},
		{Item: "token: nbf", Name: "nbf not checked",
			Edits: []Edit{{Dir: dirToken, Old: "func(nbf int64) bool { return nbf <= now+skew }", New: "func(nbf int64) bool { return true }"}},
			Pkg:   pkgToken, Run: "^TestVerifyRegisteredClaims$"},
		{Item: "token: iss", Name: "iss not checked",
			Edits: []Edit{off(dirToken, "c.Issuer == nil || *c.Issuer != i.issuer")},
			Pkg:   pkgToken, Run: "^(TestVerifyRejects|TestVerifyRegisteredClaims)$"},
		{Item: "token: aud", Name: "aud not checked",
			Edits: []Edit{off(dirToken, `audience != "" && !slices.Contains(c.Audience, audience)`)},
			Pkg:   pkgToken, Run: "^(TestVerifyRejects|TestVerifyRegisteredClaims)$"},
		{Item: "token: signature", Name: "payload taken without verifying the signature",
			Edits: []Edit{{Dir: dirToken, Old: "payload, err := jws.VerifyCompactFast(vk.pub, []byte(token), vk.alg)\n",
				New: "_, b64payload, _, _ := jwsbb.SplitCompactString(token)\n\tpayload, err := base64.RawURLEncoding.AppendDecode(nil, b64payload)\n"}},
			Pkg: pkgToken, Run: "^(TestVerifyRejects|FuzzVerify)$"},
	}
}

func releaseChecks() []Mutation {
	return []Mutation{
		{Item: "release: token valid and ours", Name: "bearer token verification error ignored",
			Edits: []Edit{{Dir: dirAttest, Old: "claims, err := s.cfg.Tokens.VerifyClaims(ctx, req.Token, s.cfg.ReleaseAudience)\n\tif err != nil {",
				New: "claims, err := s.cfg.Tokens.VerifyClaims(ctx, req.Token, s.cfg.ReleaseAudience)\n\tif false && err != nil {"}},
			Pkg: pkgServer, Run: "^TestReleaseRefused$"},
		{Item: "release: Bearer scheme", Name: "Authorization scheme not checked",
			Edits: []Edit{{Dir: dirAPI, Old: `!strings.EqualFold(scheme, "Bearer")`, New: `(false && !strings.EqualFold(scheme, "Bearer"))`}},
			Pkg:   pkgServer, Run: "^(TestBearerScheme|TestReleaseRefused)$"},
		{Item: "release: bearer size cap (64 KiB)", Name: "bearer size not capped",
			Edits: []Edit{{Dir: dirAPI, Old: `len(tok) > fault.MaxBearer {`, New: `false && len(tok) > fault.MaxBearer {`}},
			Pkg:   pkgServer, Run: "^(TestBearerScheme|TestReleaseRefused)$"},
		{Item: "release: key name checked", Name: "key-name check removed from Release",
			Edits: []Edit{{Dir: dirRelease, Old: "if err := CheckName(req.Name); err != nil {\n\t\treturn nil, fmt.Errorf(\"releasing a key",
				New: "if err := CheckName(req.Name); false && err != nil {\n\t\treturn nil, fmt.Errorf(\"releasing a key"}},
			Pkg: pkgRelease, Run: "^Test.*Name"},
		{Item: "release: release policy allows", Name: "policy denial ignored",
			Edits: []Edit{off(dirRelease, "!d.Allow")},
			Pkg:   pkgRelease, Run: "^(TestReleaseRefusals|TestPolicyDecisionFailsClosed)$"},
		{Item: "release: runtime key present", Name: "missing runtime key not refused",
			Edits: []Edit{{Dir: dirRelease, Old: "rk, err := RuntimeKey(req.Claims)\n\tif err != nil {",
				New: "rk, err := RuntimeKey(req.Claims)\n\tif false && err != nil {"}},
			Pkg: pkgRelease, Run: "^TestReleaseRefusals$"},
		{Item: "release: JWE only RSA-OAEP-256 / ECDH-ES+A256KW", Name: "short RSA runtime key wrapped",
			Edits: []Edit{off(dirKeywrap, "k.N.BitLen() < 2048")},
			Pkg:   pkgKeywrap, Run: "^(TestWrapRefusesKeys|TestWrapRefusesShortRSA)$",
			SecondLine: "jwx v3 refuses RSA keys under 2048 bits when importing, parsing and exporting them (TestWrapRefusesShortRSA)"},
		{Item: "release: JWE only RSA-OAEP-256 / ECDH-ES+A256KW", Name: "agent accepts another JWE alg",
			Edits: []Edit{off(dirKeywrap, "!ok || alg != jwa.RSA_OAEP_256()")},
			Pkg:   pkgKeywrap, Run: "^TestUnwrapRefuses$"},
		{Item: "release: JWE only RSA-OAEP-256 / ECDH-ES+A256KW", Name: "agent accepts another JWE enc",
			Edits: []Edit{off(dirKeywrap, "!ok || enc != jwa.A256GCM()")},
			Pkg:   pkgKeywrap, Run: "^TestUnwrapRefuses$"},
	}
}
