package tdx

import (
	"context"
	"crypto/x509"
	_ "embed"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/google/go-tdx-guest/abi"
	"github.com/google/go-tdx-guest/pcs"
	pb "github.com/google/go-tdx-guest/proto/tdx"
	"github.com/google/go-tdx-guest/verify"
)

// Getter fetches collateral from Intel's Provisioning Certification Service:
// it takes a URL and returns the response headers and body. It has the same
// method as go-tdx-guest's trust.HTTPSGetter, so trust.DefaultHTTPSGetter()
// and &trust.SimpleHTTPSGetter{} fit; a Getter that also has
// GetContext(ctx, url) receives the context given to VerifyContext.
type Getter interface {
	Get(url string) (header map[string][]string, body []byte, err error)
}

// Options say what Verify trusts and expects. The zero value verifies a
// quote offline against Intel's root at the current time and pins nothing
// but TD_ATTRIBUTES.DEBUG (refused). A fresh go-tdx-guest options value is
// built for every call, so an Options can be shared between goroutines.
type Options struct {
	// Now returns the time at which certificates (and collateral) must be
	// valid. nil: time.Now.
	Now func() time.Time
	// Getter fetches TCB info, QE identity and CRLs from Intel's PCS.
	// nil: no network; collateral is not checked and Claims.TCBStatus is
	// "unknown".
	Getter Getter
	// TrustedRoots are the roots the PCK chain and the collateral signing
	// chain must lead to. nil: Intel's SGX Root CA, embedded.
	TrustedRoots *x509.CertPool
	// ReportData is the expected REPORT_DATA (64 bytes). nil: not checked.
	ReportData []byte
	// MRTD is the expected MRTD (48 bytes). nil: not checked.
	MRTD []byte
	// RTMRs are the expected RTMR0-3 (48 bytes each). nil entries: not
	// checked.
	RTMRs [4][]byte
	// MRSEAM is the expected TDX module measurement (48 bytes). nil: not
	// checked.
	MRSEAM []byte
	// XFAM is the expected XFAM (8 bytes). nil: only its fixed bits are
	// checked.
	XFAM []byte
	// MinimumTEETCBSVN is the minimum TEE_TCB_SVN (16 bytes), compared
	// component by component. nil: not checked.
	MinimumTEETCBSVN []byte
	// AllowDebug accepts a TD with TD_ATTRIBUTES.DEBUG set. false: such a TD
	// is always refused with ErrDebug. Never set it in production.
	AllowDebug bool
	// RequireUpToDate fails with ErrTCB unless collateral rates the TCB
	// UpToDate. Without a Getter the status is unknown, so every quote
	// fails. With a Getter go-tdx-guest already refuses any other status.
	RequireUpToDate bool
}

// Verify checks a raw TDX quote as described in the package documentation
// and returns its claims. It is VerifyContext with context.Background().
func Verify(quote []byte, opts Options) (*Claims, error) {
	return VerifyContext(context.Background(), quote, opts)
}

// VerifyContext checks a raw TDX quote and returns its claims. ctx reaches
// the Getter when it has a GetContext method. Every failed check is
// reported (errors.Join); on any failure the claims are nil.
func VerifyContext(ctx context.Context, quote []byte, opts Options) (*Claims, error) {
	q, err := parseQuote(quote)
	if err != nil {
		return nil, err
	}
	claims := claimsFromQuote(q)

	now := time.Now
	if opts.Now != nil {
		now = opts.Now
	}
	at := now()
	roots := opts.TrustedRoots
	if roots == nil {
		if roots, err = intelRoots(); err != nil {
			return nil, fmt.Errorf("loading Intel's root certificate: %w", err)
		}
	}

	var errs []error
	sigErr := verifyOffline(q, roots, at)
	if sigErr != nil {
		errs = append(errs, sigErr)
	}
	if opts.Getter != nil && sigErr == nil {
		if err := verifyCollateral(ctx, q, roots, at, opts.Getter); err != nil {
			errs = append(errs, err)
		} else {
			claims.TCBStatus = TCBStatusUpToDate
		}
	}
	if err := validateClaims(claims, &opts); err != nil {
		errs = append(errs, err)
	}
	if opts.RequireUpToDate && opts.Getter == nil {
		errs = append(errs, fmt.Errorf("%w: TCB status is %s: no collateral getter configured", ErrTCB, claims.TCBStatus))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if claims.FMSPC, err = fmspcOf(q); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrChain, err)
	}
	return claims, nil
}

// parseQuote turns raw bytes into a checked QuoteV4.
func parseQuote(raw []byte) (*pb.QuoteV4, error) {
	if len(raw) < 2 {
		return nil, fmt.Errorf("%w: %d bytes", ErrMalformed, len(raw))
	}
	if v := binary.LittleEndian.Uint16(raw); v != abi.QuoteVersion {
		return nil, fmt.Errorf("%w: quote version %d not supported, want %d", ErrMalformed, v, abi.QuoteVersion)
	}
	var q *pb.QuoteV4
	err := guard("parsing TDX quote", func() error {
		anyQuote, err := abi.QuoteToProto(raw)
		if err != nil {
			return err
		}
		v4, ok := anyQuote.(*pb.QuoteV4)
		if !ok {
			return fmt.Errorf("unexpected quote type %T", anyQuote)
		}
		if err := abi.CheckQuoteV4(v4); err != nil {
			return err
		}
		q = v4
		return nil
	})
	if err != nil {
		if errors.Is(err, ErrMalformed) {
			return nil, err
		}
		return nil, fmt.Errorf("parsing TDX quote: %w: %w", ErrMalformed, err)
	}
	return q, nil
}

// verifyOffline checks the PCK chain, the QE report and the quote signature
// with go-tdx-guest, without collateral. go-tdx-guest's errors carry no
// types for most steps, so a failure is attributed by checking the chain
// on its own: a chain that verifies means a signature was bad.
func verifyOffline(q *pb.QuoteV4, roots *x509.CertPool, at time.Time) error {
	err := guard("verifying TDX quote", func() error {
		return verify.TdxQuote(q, &verify.Options{TrustedRoots: roots, Now: timeSet(at)})
	})
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrMalformed):
		return err
	case errors.Is(err, verify.ErrHashVerificationFail):
		return fmt.Errorf("verifying quote signature: %w: %w", ErrSignature, err)
	}
	if cerr := checkChain(q, roots, at); cerr != nil {
		return fmt.Errorf("verifying PCK certificate chain: %w: %w", ErrChain, err)
	}
	return fmt.Errorf("verifying QE report: %w: %w", ErrSignature, err)
}

// checkChain verifies the quote's PCK certificate chain the way
// go-tdx-guest does, to attribute its errors.
func checkChain(q *pb.QuoteV4, roots *x509.CertPool, at time.Time) error {
	return guard("verifying PCK certificate chain", func() error {
		chain, err := verify.ExtractChainFromQuote(q)
		if err != nil {
			return err
		}
		if _, err := pcs.PckCertificateExtensions(chain.PCKCertificate); err != nil {
			return err
		}
		intermediates := x509.NewCertPool()
		intermediates.AddCert(chain.IntermediateCertificate)
		_, err = chain.PCKCertificate.Verify(x509.VerifyOptions{Roots: roots, Intermediates: intermediates, CurrentTime: at})
		return err
	})
}

// verifyCollateral runs go-tdx-guest's full verification with collateral
// from getter and revocation checks. Call it only after verifyOffline
// passed: any failure here is then about collateral, revocation or TCB.
func verifyCollateral(ctx context.Context, q *pb.QuoteV4, roots *x509.CertPool, at time.Time, getter Getter) error {
	err := guard("verifying TDX collateral", func() error {
		return verify.TdxQuoteContext(ctx, q, &verify.Options{
			GetCollateral:    true,
			CheckRevocations: true,
			Getter:           getter,
			TrustedRoots:     roots,
			Now:              timeSet(at),
		})
	})
	if err == nil {
		return nil
	}
	// go-tdx-guest formats these errors with %v; their text is all there is.
	msg := err.Error()
	switch {
	case errors.Is(err, ErrMalformed):
		return err
	case strings.Contains(msg, "TCB status check"):
		return fmt.Errorf("checking TCB status against Intel's collateral: %w: %w", ErrTCB, err)
	case strings.Contains(msg, "revoked"):
		return fmt.Errorf("checking PCK certificate revocation: %w: %w", ErrChain, err)
	}
	return fmt.Errorf("verifying Intel's collateral: %w: %w", ErrCollateral, err)
}

func timeSet(at time.Time) *verify.TimeSet {
	return &verify.TimeSet{PckCertChain: at, TcbInfo: at, QeIdentity: at, PckCrl: at, RootCaCrl: at}
}

// guard runs f and turns a panic inside it (go-tdx-guest on hostile bytes)
// into an error wrapping ErrMalformed.
func guard(action string, f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%s: %w: panic: %v", action, ErrMalformed, r)
		}
	}()
	return f()
}

// intelSGXRootCA is Intel's SGX Root CA (the same certificate go-tdx-guest
// embeds), SHA-256 fingerprint
// 44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3.
//
//go:embed intel_sgx_root_ca.pem
var intelSGXRootCA []byte

// intelRoots is a pool holding only Intel's SGX Root CA. Passing it
// explicitly also keeps go-tdx-guest from logging a warning to stdout on
// every call.
var intelRoots = sync.OnceValues(func() (*x509.CertPool, error) {
	block, _ := pem.Decode(intelSGXRootCA)
	if block == nil {
		return nil, errors.New("no PEM block in the embedded root")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parsing the embedded root: %w", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return pool, nil
})
