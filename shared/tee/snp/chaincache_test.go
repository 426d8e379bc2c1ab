package snp_test

import (
	"bytes"
	"errors"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/confidant-cvm/confidant/shared/tee/snp"
)

func at(year int) func() time.Time {
	return func() time.Time { return time.Date(year, 1, 1, 0, 0, 0, 0, time.UTC) }
}

// warmCache verifies report once with a fresh cache and returns the cache,
// holding the report's chain.
func warmCache(t *testing.T, report, table []byte, opts snp.Options) *snp.ChainCache {
	t.Helper()
	opts.ChainCache = snp.NewChainCache(0)
	if _, err := snp.Verify(report, table, opts); err != nil {
		t.Fatalf("Verify(warming the cache): %v", err)
	}
	if n := opts.ChainCache.Len(); n != 1 {
		t.Fatalf("cache holds %d chains after one verification, want 1", n)
	}
	return opts.ChainCache
}

// TestChainCacheStillChecks: a cached chain skips only the chain's
// signatures. The report signature, the validity of the chain at Now, the
// roots and every report check still apply, and give the same sentinel as
// without the cache.
func TestChainCacheStillChecks(t *testing.T) {
	simOpts := func() snp.Options {
		return snp.Options{SimRoot: parseRoot(t, simFixtureRoot), Now: simFixtureNow, AllowSMT: true}
	}
	tests := map[string]struct {
		report, table []byte
		warm          snp.Options // the options the cache was warmed with
		mutate        func(o *snp.Options)
		wantErr       error
	}{
		"milan again":            {report: milanReport, table: milanTable(t), warm: permissive()},
		"simulated again":        {report: simFixtureReport, table: simFixtureTable, warm: simOpts()},
		"milan signature r":      {report: flip(milanReport, offSignature, 0x01), table: milanTable(t), warm: permissive(), wantErr: snp.ErrSignature},
		"milan signature s":      {report: flip(milanReport, offSignature+0x48, 0x80), table: milanTable(t), warm: permissive(), wantErr: snp.ErrSignature},
		"milan measurement":      {report: flip(milanReport, offMeasurement+5, 0x01), table: milanTable(t), warm: permissive(), wantErr: snp.ErrSignature},
		"milan reported TCB":     {report: flip(milanReport, offReportedTCB, 0x01), table: milanTable(t), warm: permissive(), wantErr: snp.ErrSignature},
		"simulated signature":    {report: flip(simFixtureReport, offSignature, 0x01), table: simFixtureTable, warm: simOpts(), wantErr: snp.ErrSignature},
		"simulated report data":  {report: flip(simFixtureReport, offReportData, 0x01), table: simFixtureTable, warm: simOpts(), wantErr: snp.ErrSignature},
		"milan VCEK expired":     {report: milanReport, table: milanTable(t), warm: permissive(), mutate: func(o *snp.Options) { o.Now = at(2030) }, wantErr: snp.ErrChain},
		"milan VCEK not yet":     {report: milanReport, table: milanTable(t), warm: permissive(), mutate: func(o *snp.Options) { o.Now = at(2021) }, wantErr: snp.ErrChain},
		"simulated VCEK expired": {report: simFixtureReport, table: simFixtureTable, warm: simOpts(), mutate: func(o *snp.Options) { o.Now = at(2040) }, wantErr: snp.ErrChain},
		"simulated not yet":      {report: simFixtureReport, table: simFixtureTable, warm: simOpts(), mutate: func(o *snp.Options) { o.Now = at(2020) }, wantErr: snp.ErrChain},
		"milan with a sim root": {report: milanReport, table: withASK(t, testSigner(t)), warm: permissive(),
			mutate: func(o *snp.Options) { o.SimRoot = testSigner(t).RootCert() }, wantErr: snp.ErrChain},
		"simulated with AMD roots": {report: simFixtureReport, table: simFixtureTable, warm: simOpts(),
			mutate: func(o *snp.Options) { o.SimRoot = nil }, wantErr: snp.ErrChain},
		"simulated, another sim root": {report: simFixtureReport, table: simFixtureTable, warm: simOpts(),
			mutate: func(o *snp.Options) { o.SimRoot = testSigner(t).RootCert() }, wantErr: snp.ErrChain},
		"milan product Genoa": {report: milanReport, table: milanTable(t), warm: permissive(),
			mutate: func(o *snp.Options) { o.Product = "Genoa" }, wantErr: snp.ErrChain},
		"milan debug refused": {report: milanReport, table: milanTable(t), warm: permissive(),
			mutate: func(o *snp.Options) { o.AllowDebug = false }, wantErr: snp.ErrDebug},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			// The warming report is the unmodified one of the same source.
			warmReport := milanReport
			if tt.warm.SimRoot != nil {
				warmReport = simFixtureReport
			}
			warmTable := milanTable(t)
			if tt.warm.SimRoot != nil {
				warmTable = simFixtureTable
			}
			opts := tt.warm
			opts.ChainCache = warmCache(t, warmReport, warmTable, tt.warm)
			if tt.mutate != nil {
				tt.mutate(&opts)
			}
			cached, err := snp.Verify(tt.report, tt.table, opts)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Fatalf("Verify(cached) = %+v, %v; want error %v", cached, err, tt.wantErr)
			}
			// The same call without a cache agrees.
			opts.ChainCache = nil
			uncached, uerr := snp.Verify(tt.report, tt.table, opts)
			if !errors.Is(uerr, tt.wantErr) || (tt.wantErr == nil && uerr != nil) {
				t.Fatalf("Verify(uncached) error = %v, want %v", uerr, tt.wantErr)
			}
			if !reflect.DeepEqual(cached, uncached) {
				t.Errorf("cached claims %+v differ from uncached %+v", cached, uncached)
			}
		})
	}
}

// TestChainCacheOtherReports: one cached VCEK serves every report it
// signs, and a report of another chip presented with that VCEK fails.
func TestChainCacheOtherReports(t *testing.T) {
	s := testSigner(t)
	opts := simOptions(s)
	opts.ChainCache = snp.NewChainCache(0)
	for i := range 3 {
		req := simRequest()
		req.ReportData[1] = byte(i)
		report, table, err := s.Sign(req)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := snp.Verify(report, table, opts); err != nil {
			t.Fatalf("report %d: %v", i, err)
		}
	}
	if n := opts.ChainCache.Len(); n != 1 {
		t.Fatalf("cache holds %d chains for one VCEK, want 1", n)
	}
	// The fixture's report (another simulated chip) with this signer's
	// table: the cached VCEK does not verify it.
	if _, err := snp.Verify(simFixtureReport, s.CertTable(), opts); !errors.Is(err, snp.ErrSignature) {
		t.Fatalf("another chip's report with a cached VCEK: error %v, want ErrSignature", err)
	}
}

// TestChainCacheOnlySuccess: a chain that fails is not cached, so it fails
// again.
func TestChainCacheOnlySuccess(t *testing.T) {
	cache := snp.NewChainCache(0)
	opts := snp.Options{SimRoot: testSigner(t).RootCert(), Now: simFixtureNow, AllowSMT: true, ChainCache: cache}
	for range 2 {
		if _, err := snp.Verify(simFixtureReport, simFixtureTable, opts); !errors.Is(err, snp.ErrChain) {
			t.Fatalf("fixture report under another root: error %v, want ErrChain", err)
		}
	}
	expired := permissive()
	expired.Now, expired.ChainCache = at(2030), cache
	if _, err := snp.Verify(milanReport, milanTable(t), expired); !errors.Is(err, snp.ErrChain) {
		t.Fatalf("expired VCEK: error %v, want ErrChain", err)
	}
	if n := cache.Len(); n != 0 {
		t.Fatalf("cache holds %d chains after failures only, want 0", n)
	}
}

// TestChainCacheFetchedNotCached: a VCEK fetched with the Getter is not
// cached (the table did not carry it, so there is nothing to key it by).
func TestChainCacheFetchedNotCached(t *testing.T) {
	g := &kdsGetter{}
	opts := permissive()
	opts.Getter, opts.ChainCache = g, snp.NewChainCache(0)
	for range 2 {
		if _, err := snp.Verify(milanReport, nil, opts); err != nil {
			t.Fatal(err)
		}
	}
	if n := opts.ChainCache.Len(); n != 0 {
		t.Errorf("cache holds %d chains after fetching, want 0", n)
	}
}

func TestChainCacheBounded(t *testing.T) {
	cache := snp.NewChainCache(1)
	milan := permissive()
	milan.ChainCache = cache
	simulated := snp.Options{SimRoot: parseRoot(t, simFixtureRoot), Now: simFixtureNow, AllowSMT: true, ChainCache: cache}
	for range 2 {
		if _, err := snp.Verify(milanReport, milanTable(t), milan); err != nil {
			t.Fatal(err)
		}
		if _, err := snp.Verify(simFixtureReport, simFixtureTable, simulated); err != nil {
			t.Fatal(err)
		}
		if n := cache.Len(); n != 1 {
			t.Fatalf("cache of size 1 holds %d chains", n)
		}
	}
}

// TestChainCacheConcurrent is for the race detector.
func TestChainCacheConcurrent(t *testing.T) {
	cache := snp.NewChainCache(0)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 8 {
		wg.Go(func() {
			var err error
			if i%2 == 0 {
				opts := permissive()
				opts.ChainCache = cache
				_, err = snp.Verify(milanReport, milanTable(t), opts)
			} else {
				_, err = snp.Verify(simFixtureReport, simFixtureTable, snp.Options{
					SimRoot: parseRoot(t, simFixtureRoot), Now: simFixtureNow, AllowSMT: true, ChainCache: cache})
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if n := cache.Len(); n != 2 {
		t.Errorf("cache holds %d chains, want 2", n)
	}
}

// TestChainCacheProductLine: the product line a version 3 report names is
// part of the key. A Milan VCEK that signed a Milan report is cached; the
// same VCEK signing a report that names Genoa must still be refused.
func TestChainCacheProductLine(t *testing.T) {
	s := testSigner(t)
	opts := simOptions(s)
	opts.ChainCache = snp.NewChainCache(0)
	milan, table, err := s.Sign(simRequest())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := snp.Verify(milan, table, opts); err != nil {
		t.Fatalf("Milan report: %v", err)
	}
	genoa := bytes.Clone(milan)
	genoa[offCPUModel] = 0x11 // family 19h model 11h: Genoa
	if genoa, err = s.Resign(genoa); err != nil {
		t.Fatal(err)
	}
	if _, err := snp.Verify(genoa, table, opts); !errors.Is(err, snp.ErrChain) {
		t.Fatalf("Genoa report signed by a cached Milan VCEK: error %v, want ErrChain", err)
	}
	opts.ChainCache = nil
	if _, err := snp.Verify(genoa, table, opts); !errors.Is(err, snp.ErrChain) {
		t.Fatalf("Genoa report signed by a Milan VCEK, no cache: error %v, want ErrChain", err)
	}
}

// offCPUModel is CPUID_MOD_ID in a version 3 report.
const offCPUModel = 0x189
