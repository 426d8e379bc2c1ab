package tpm

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"testing"

	tpmpb "github.com/google/go-tpm-tools/proto/tpm"
)

// TestLogCacheSameClaims: claims taken from the cache are the claims
// extracted without it, for a Secure Boot UEFI log, a UEFI log without
// Secure Boot and a BIOS log.
func TestLogCacheSameClaims(t *testing.T) {
	rhel8 := attestWithLog(t, rhel8Log)
	tests := map[string]struct {
		att, nonce []byte
		ak         any
	}{
		"UEFI Secure Boot": {att: rhel8.att, nonce: rhel8.nonce, ak: rhel8.ak},
		"OVMF":             {att: ovmfAttestation, nonce: recordedNonce(), ak: recordedAK(t, ovmfAttestation)},
		"SeaBIOS":          {att: seabiosAttestation, nonce: recordedNonce(), ak: recordedAK(t, seabiosAttestation)},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			want, err := Verify(tt.att, tt.ak, tt.nonce, Options{})
			if err != nil {
				t.Fatal(err)
			}
			if len(want.Events.EFIApps)+len(want.ExtractionErrors) == 0 && name != "SeaBIOS" {
				t.Fatal("no EFI applications or extraction errors to compare")
			}
			cache := NewLogCache(0)
			for i := range 3 {
				got, err := Verify(tt.att, tt.ak, tt.nonce, Options{LogCache: cache})
				if err != nil {
					t.Fatalf("call %d: %v", i, err)
				}
				if !reflect.DeepEqual(got, want) {
					t.Fatalf("call %d: claims %+v, want %+v", i, got, want)
				}
				// The caller owns the claims: changing them does not
				// change the cache.
				for i := range got.Events.EFIApps {
					got.Events.EFIApps[i] = "changed"
				}
				for i := range got.ExtractionErrors {
					got.ExtractionErrors[i] = "changed"
				}
			}
			if n := cache.Len(); n != 1 {
				t.Errorf("cache holds %d logs, want 1", n)
			}
		})
	}
}

// TestLogCacheStillReplays: a cached log must still replay to the quoted
// PCRs. The recorded OVMF quote carrying the (cached) RHEL 8 log fails, and
// failures are not cached.
func TestLogCacheStillReplays(t *testing.T) {
	rhel8 := attestWithLog(t, rhel8Log)
	cache := NewLogCache(0)
	if _, err := Verify(rhel8.att, rhel8.ak, rhel8.nonce, Options{LogCache: cache}); err != nil {
		t.Fatal(err)
	}
	other := withEventLog(t, ovmfAttestation, rhel8Log)
	for range 2 {
		_, err := Verify(other, recordedAK(t, ovmfAttestation), recordedNonce(), Options{LogCache: cache})
		if !errors.Is(err, ErrEventLog) {
			t.Fatalf("another quote with a cached log: error %v, want ErrEventLog", err)
		}
	}
	if n := cache.Len(); n != 1 {
		t.Errorf("cache holds %d logs, want 1 (failures are not cached)", n)
	}
	var nilCache *LogCache
	if nilCache.Len() != 0 {
		t.Error("nil cache is not empty")
	}
}

// TestLogCacheKey: the key covers every input of a replay — the log, the
// bank, each quoted PCR's index and value, and the options — so a log sent
// with any other PCR value is replayed again.
func TestLogCacheKey(t *testing.T) {
	base := func() *tpmpb.PCRs {
		p := &tpmpb.PCRs{Hash: tpmpb.HashAlgo_SHA256, Pcrs: map[uint32][]byte{}}
		for i := range uint32(24) {
			p.Pcrs[i] = bytes.Repeat([]byte{byte(i)}, 32)
		}
		return p
	}
	raw := []byte("a log")
	want := logCacheKey(raw, base(), false, true)
	if logCacheKey(raw, base(), false, true) != want {
		t.Fatal("key is not deterministic")
	}
	seen := map[logKey]string{want: "base"}
	add := func(name string, k logKey) {
		if prev, ok := seen[k]; ok {
			t.Errorf("%s has the key of %s", name, prev)
		}
		seen[k] = name
	}
	for i := range uint32(24) {
		p := base()
		p.Pcrs[i][31] ^= 1
		add(fmt.Sprintf("PCR %d changed", i), logCacheKey(raw, p, false, true))
		p = base()
		delete(p.Pcrs, i)
		add(fmt.Sprintf("PCR %d not quoted", i), logCacheKey(raw, p, false, true))
	}
	p := base()
	p.Hash = tpmpb.HashAlgo_SHA384
	add("other bank", logCacheKey(raw, p, false, true))
	add("other log", logCacheKey([]byte("a log."), base(), false, true))
	add("allowEmpty", logCacheKey(raw, base(), true, true))
	add("without claims", logCacheKey(raw, base(), false, false))
}
