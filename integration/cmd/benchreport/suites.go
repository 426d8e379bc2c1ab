package main

// suite is one run of one package's test binary.
type suite struct {
	// pkg is the package directory, relative to the repository root.
	pkg string
	// bench is the -test.bench pattern.
	bench string
	// benchtime is the -test.benchtime value.
	benchtime string
}

// floorSuite is the raw cryptography, run before and after every round.
var floorSuite = suite{pkg: "shared/floor", bench: ".", benchtime: "1s"}

// ourSuites are Confidant's hot paths, run once per round, in this order.
var ourSuites = []suite{
	{pkg: "shared/tee/snp", bench: "^BenchmarkVerify(Milan|Simulated)(Cached)?$", benchtime: "1s"},
	{pkg: "shared/tee/tdx", bench: "^BenchmarkVerify$", benchtime: "1s"},
	{pkg: "shared/tpm", bench: "^BenchmarkVerify(UEFISecureBoot(Cached)?)?$", benchtime: "1s"},
	{pkg: "shared/evidence", bench: "^BenchmarkDecodeAttestation$", benchtime: "1s"},
	{pkg: "verifier/internal/policy", bench: "^BenchmarkEvaluate$", benchtime: "1s"},
	{pkg: "verifier/internal/token", bench: "^Benchmark(Sign|IssuerVerify|RelyingPartyVerify)$", benchtime: "1s"},
	{pkg: "verifier/internal/appraise", bench: "^BenchmarkAppraise$", benchtime: "1s"},
	// Evidence for the server benchmarks comes from the one TPM simulator
	// (about 8 ms each): a fixed count keeps the round short.
	{pkg: "verifier/internal/server", bench: "^Benchmark(Attest|AttestParallel|Release)$", benchtime: "300x"},
	{pkg: "shared/luks2", bench: "^BenchmarkXTSRaw$", benchtime: "1s"},
	{pkg: "shared/luks2", bench: "^BenchmarkEncryptImage(Memory)?$", benchtime: "4x"},
}

// term is coef × the floor benchmark key.
type term struct {
	key  string
	coef float64
}

// comparison relates one of our results to a sum of floor results.
type comparison struct {
	// label names the path.
	label string
	// key is our benchmark; metric its unit ("ns/op", "cpu-ns/op", "MB/s").
	key, metric string
	// floor is the sum it is compared with, in ns/op (or one MB/s term).
	floor []term
	// floorText spells floor out.
	floorText string
	// minThroughput is the target: our throughput at least this fraction
	// of the floor's (0: no target).
	minThroughput float64
}

// comparisons are the ratios BENCHMARKS.md reports.
var comparisons = []comparison{
	{label: "SNP report, real Milan, chain cold", key: "snp.VerifyMilan", metric: "ns/op",
		floor: []term{{"floor.P384Verify", 1}, {"floor.RSA4096PSSVerify", 2}}, floorText: "P-384 verify + 2 × RSA-4096 PSS verify"},
	{label: "SNP report, real Milan, chain cached", key: "snp.VerifyMilanCached", metric: "ns/op",
		floor: []term{{"floor.P384Verify", 1}}, floorText: "P-384 verify"},
	{label: "SNP report, simulated, chain cold", key: "snp.VerifySimulated", metric: "ns/op",
		floor: []term{{"floor.P384Verify", 1}, {"floor.RSA2048Verify", 2}}, floorText: "P-384 verify + 2 × RSA-2048 verify"},
	{label: "SNP report, simulated, chain cached", key: "snp.VerifySimulatedCached", metric: "ns/op",
		floor: []term{{"floor.P384Verify", 1}}, floorText: "P-384 verify"},
	{label: "TDX quote (recorded SPR quote, offline)", key: "tdx.Verify", metric: "ns/op",
		floor: []term{{"floor.P256Verify", 4}}, floorText: "4 × P-256 verify (quote, QE report, PCK chain)"},
	{label: "vTPM evidence, recorded QEMU OVMF log (11 KB)", key: "tpm.Verify", metric: "ns/op",
		floor: []term{{"floor.P256Verify", 1}}, floorText: "P-256 verify"},
	{label: "vTPM evidence, UEFI Secure Boot log (34 KB)", key: "tpm.VerifyUEFISecureBoot", metric: "ns/op",
		floor: []term{{"floor.P256Verify", 1}}, floorText: "P-256 verify"},
	{label: "vTPM evidence, UEFI Secure Boot log, its replay cached", key: "tpm.VerifyUEFISecureBootCached", metric: "ns/op",
		floor: []term{{"floor.P256Verify", 1}}, floorText: "P-256 verify"},
	{label: "evidence envelope decode (52 KB)", key: "evidence.DecodeAttestation", metric: "ns/op",
		floor: []term{{"floor.P256Verify", 1}}, floorText: "P-256 verify (for scale; no crypto)"},
	{label: "policy, sim_development", key: "policy.Evaluate/sim_development", metric: "ns/op",
		floor: []term{{"floor.P256Verify", 1}}, floorText: "P-256 verify (for scale; no crypto)"},
	{label: "policy, snp_production", key: "policy.Evaluate/snp_production", metric: "ns/op",
		floor: []term{{"floor.P256Verify", 1}}, floorText: "P-256 verify (for scale; no crypto)"},
	{label: "token sign (5.6 KB token)", key: "token.Sign", metric: "ns/op",
		floor: []term{{"floor.ES256Sign", 1}}, floorText: "ES256 sign"},
	{label: "token verify by the verifier (key release)", key: "token.IssuerVerify", metric: "ns/op",
		floor: []term{{"floor.ES256Verify", 1}}, floorText: "ES256 verify"},
	{label: "relying-party token verify, jwx jwt.Parse (cached JWKS)", key: "token.RelyingPartyVerify/parse", metric: "ns/op",
		floor: []term{{"floor.ES256Verify", 1}}, floorText: "ES256 verify", minThroughput: 0.80},
	{label: "relying-party token verify, jwx jws.VerifyCompactFast + claims struct (README recipe)", key: "token.RelyingPartyVerify/fast", metric: "ns/op",
		floor: []term{{"floor.ES256Verify", 1}}, floorText: "ES256 verify", minThroughput: 0.80},
	{label: "appraisal core: decode + SNP + vTPM + policy", key: "appraise.Appraise", metric: "ns/op",
		floor: []term{{"floor.P384Verify", 1}, {"floor.P256Verify", 1}}, floorText: "P-384 verify + P-256 verify"},
	{label: "full appraisal handler, one at a time (latency, 1 fsync)", key: "server.Attest", metric: "ns/op",
		floor: appraisalFloor, floorText: appraisalFloorText},
	{label: "full appraisal handler, CPU per appraisal (8 in flight per core)", key: "server.AttestParallel", metric: "cpu-ns/op",
		floor: appraisalFloor, floorText: appraisalFloorText},
	{label: "key release, core (token verify + policy + JWE)", key: "server.Release/core", metric: "ns/op",
		floor: []term{{"floor.ES256Verify", 1}, {"floor.RSA2048Verify", 1}}, floorText: "ES256 verify + RSA-2048 public op"},
	{label: "key release, handler (+ HTTP, audit write)", key: "server.Release/handler", metric: "ns/op",
		floor: []term{{"floor.ES256Verify", 1}, {"floor.RSA2048Verify", 1}}, floorText: "ES256 verify + RSA-2048 public op"},
	{label: "LUKS2 data cipher, one core", key: "luks2.XTSRaw", metric: "MB/s",
		floor: []term{{"floor.AESXTSPerCore", 1}}, floorText: "AES-XTS one core"},
	{label: "LUKS2 EncryptImage (64 MiB, all cores, to a file on disk + fsync)", key: "luks2.EncryptImage", metric: "MB/s",
		floor: []term{{"floor.AESXTSAllCores", 1}}, floorText: "AES-XTS all cores", minThroughput: 0.70},
	{label: "LUKS2 EncryptImage (64 MiB, all cores, to tmpfs)", key: "luks2.EncryptImageMemory", metric: "MB/s",
		floor: []term{{"floor.AESXTSAllCores", 1}}, floorText: "AES-XTS all cores", minThroughput: 0.70},
}

var appraisalFloor = []term{{"floor.P384Verify", 1}, {"floor.P256Verify", 1}, {"floor.ES256Sign", 1}}

const appraisalFloorText = "P-384 verify + P-256 verify + ES256 sign"

// appraisalThroughputTarget: the full SNP + vTPM appraisal's throughput must
// be at least this fraction of the floor's (NumCPU / appraisalFloor).
const appraisalThroughputTarget = 0.60
