package spec

import (
	"encoding/json"
	"fmt"
	"strconv"

	"go.yaml.in/yaml/v3"

	"github.com/confidant-cvm/confidant/shared/bytesize"
)

// Size is a byte count written with a binary unit: "512MiB", "4GiB",
// "1TiB" (also "512M", "4G", "1T"), or a plain byte count.
type Size int64

// ParseSize parses a Size: the strict syntax of shared/bytesize, at most
// 4 EiB.
func ParseSize(s string) (Size, error) {
	n, err := bytesize.Parse(s, bytesize.Options{})
	return Size(n), err
}

// String formats the size with the largest exact binary unit.
func (z Size) String() string {
	for _, u := range []struct {
		suffix string
		shift  uint
	}{{"TiB", 40}, {"GiB", 30}, {"MiB", 20}, {"KiB", 10}} {
		if z != 0 && z%(1<<u.shift) == 0 {
			return strconv.FormatInt(int64(z)>>u.shift, 10) + u.suffix
		}
	}
	return strconv.FormatInt(int64(z), 10)
}

// MiB returns the size in MiB, rounded down.
func (z Size) MiB() int64 { return int64(z) >> 20 }

// UnmarshalYAML accepts a string with a unit or a plain integer.
func (z *Size) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: size must be a scalar", n.Line)
	}
	v, err := ParseSize(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*z = v
	return nil
}

// MarshalYAML writes the String form.
func (z Size) MarshalYAML() (any, error) { return z.String(), nil }

// MarshalJSON writes the String form.
func (z Size) MarshalJSON() ([]byte, error) { return json.Marshal(z.String()) }

// UnmarshalJSON accepts the String form.
func (z *Size) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("size must be a string: %w", err)
	}
	v, err := ParseSize(s)
	if err != nil {
		return err
	}
	*z = v
	return nil
}
