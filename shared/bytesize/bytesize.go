// Package bytesize parses byte counts written with a binary unit ("512MiB",
// "2G", "1T"): the one grammar behind hostd's guest specs and the agent's
// configuration (temp_disk.swap_size).
//
// A size is a whole decimal number, optionally followed by K, M, G or T
// (powers of 1024), optionally followed by "iB". Options.Loose further
// accepts what the agent's configuration has always accepted: spaces around
// the size and between the number and the unit, leading zeros, a lower-case
// k, and a "B" suffix ("7B", "512MB", "1KBiB").
package bytesize

import (
	"fmt"
	"strconv"
	"strings"
)

// MaxSize is the default cap, 4 EiB.
const MaxSize = 1 << 62

// Options choose the cap and the syntax. The zero value is the strict
// syntax capped at MaxSize.
type Options struct {
	// Max is the largest size accepted; 0: MaxSize.
	Max int64
	// Loose accepts the agent configuration's lenient forms (see the
	// package comment). Its errors name the problem ("unknown unit");
	// the strict syntax's say what it wants.
	Loose bool
}

// Parse parses a size in bytes.
func Parse(s string, o Options) (int64, error) {
	limit := o.Max
	if limit <= 0 {
		limit = MaxSize
	}
	num := s
	if o.Loose {
		num = strings.TrimSpace(num)
	}
	unit := strings.TrimLeft(num, "0123456789")
	num = num[:len(num)-len(unit)]
	if o.Loose {
		unit = strings.TrimSpace(unit)
	}
	shift, unitOK := unitShift(unit, o.Loose)
	if !o.Loose {
		return parseStrict(s, num, shift, unitOK, limit)
	}
	if !unitOK {
		return 0, fmt.Errorf("size %q: unknown unit %q", s, unit)
	}
	if num == "" {
		return 0, fmt.Errorf("size %q: want a whole number of bytes, optionally with K, M, G or T", s)
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n > limit>>shift {
		return 0, fmt.Errorf("size %q: too large", s)
	}
	return n << shift, nil
}

// parseStrict finishes the strict syntax: one message for every form it
// does not take (no digits, a leading zero, a number beyond int64, a unit
// it does not know).
func parseStrict(s, num string, shift uint, unitOK bool, limit int64) (int64, error) {
	n, err := strconv.ParseInt(num, 10, 64)
	if !unitOK || err != nil || strconv.FormatInt(n, 10) != num {
		return 0, fmt.Errorf("size %q: want a whole number with an optional unit KiB, MiB, GiB or TiB", s)
	}
	if n > limit>>shift {
		return 0, fmt.Errorf("size %q: too large", s)
	}
	return n << shift, nil
}

// unitShift returns the power of two of unit and whether the syntax takes
// unit at all.
func unitShift(unit string, loose bool) (uint, bool) {
	base := strings.TrimSuffix(unit, "iB")
	if loose {
		base = strings.TrimSuffix(base, "B")
	}
	switch base {
	case "":
		return 0, unit == "" || loose && unit == "B"
	case "k":
		return 10, loose
	case "K":
		return 10, true
	case "M":
		return 20, true
	case "G":
		return 30, true
	case "T":
		return 40, true
	}
	return 0, false
}
