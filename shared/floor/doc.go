// Package floor holds no code, only benchmarks of the raw cryptographic
// operations Confidant's hot paths are built from: one P-384 and one P-256
// ECDSA verification, one RSA-2048 verification, one ES256 signature and
// verification, and AES-XTS throughput per core and on all cores.
//
// They are the "floor" that scripts/bench-report.sh divides our own
// benchmarks by, measured in the same run so that the ratios in
// BENCHMARKS.md survive a noisy, shared machine.
package floor
