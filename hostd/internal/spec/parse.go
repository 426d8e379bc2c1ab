package spec

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"

	"go.yaml.in/yaml/v3"
)

// ParseYAML decodes a spec strictly: unknown keys, several documents and
// oversize input are errors. Relative paths are made absolute against
// baseDir. The result is not validated; call Resolve and Validate.
func ParseYAML(b []byte, baseDir string) (*Spec, error) {
	if len(b) > maxSpecBytes {
		return nil, fmt.Errorf("%w: spec larger than %d bytes", ErrInvalid, maxSpecBytes)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	var s Spec
	if err := decodeYAML(dec, &s); err != nil {
		return nil, fmt.Errorf("%w: decoding YAML: %v", ErrInvalid, err)
	}
	var extra any
	if err := decodeYAML(dec, &extra); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: more than one YAML document", ErrInvalid)
	}
	s.absPaths(baseDir)
	return &s, nil
}

// decodeYAML recovers from panics in the YAML decoder (hostile input must
// not bring the CLI or daemon down).
func decodeYAML(dec *yaml.Decoder, v any) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("YAML decoder panicked: %v", r)
		}
	}()
	return dec.Decode(v)
}

// ParseJSON decodes a spec sent to the daemon strictly (unknown fields and
// trailing data are errors). The result is not validated.
func ParseJSON(b []byte) (*Spec, error) {
	if len(b) > maxSpecBytes {
		return nil, fmt.Errorf("%w: spec larger than %d bytes", ErrInvalid, maxSpecBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var s Spec
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("%w: decoding JSON: %v", ErrInvalid, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: trailing data after the spec", ErrInvalid)
	}
	if err := checkDuplicateKeys(b); err != nil {
		return nil, fmt.Errorf("%w: decoding JSON: %v", ErrInvalid, err)
	}
	return &s, nil
}

func (s *Spec) absPaths(baseDir string) {
	abs := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(baseDir, *p)
		}
	}
	abs(&s.Image.Manifest)
	abs(&s.Image.Kernel)
	abs(&s.Image.Initrd)
	abs(&s.Image.OSDisk)
	abs(&s.Image.ESP)
	abs(&s.Image.UEFIVars)
	abs(&s.Firmware.Path)
}
