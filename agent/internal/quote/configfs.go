package quote

import (
	"context"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/google/go-configfs-tsm/configfs/configfsi"
	"github.com/google/go-configfs-tsm/report"

	"github.com/confidant-cvm/confidant/shared/evidence"
)

// configfs-tsm provider names.
const (
	providerSEV = "sev_guest"
	providerTDX = "tdx_guest"
)

// ConfigfsTSM gets reports through configfs-tsm. Each Quote creates a
// report entry, writes inblob, reads outblob (and auxblob, the SNP
// certificate table) and removes the entry; go-configfs-tsm checks the
// entry's generation so a concurrent writer cannot swap the report.
type ConfigfsTSM struct {
	client   configfsi.Client
	provider string
	kind     evidence.Kind
}

// NewConfigfsTSM asks configfs-tsm which TEE serves it and returns a
// provider for it. A provider other than sev_guest or tdx_guest fails with
// ErrUnsupported.
func NewConfigfsTSM(client configfsi.Client) (*ConfigfsTSM, error) {
	r, err := report.CreateOpenReport(client)
	if err != nil {
		return nil, fmt.Errorf("opening configfs-tsm: %w", err)
	}
	// Writing inblob makes no report (reading outblob does); it gives the
	// entry a generation to check the provider read against.
	err = r.WriteOption("inblob", make([]byte, ReportDataSize))
	var p []byte
	if err == nil {
		p, err = r.ReadOption("provider")
	}
	derr := r.Destroy()
	if err != nil {
		return nil, fmt.Errorf("reading configfs-tsm provider: %w", err)
	}
	if derr != nil {
		return nil, fmt.Errorf("removing configfs-tsm report entry: %w", derr)
	}
	provider := strings.TrimSpace(string(p))
	kind, err := providerKind(provider)
	if err != nil {
		return nil, err
	}
	return &ConfigfsTSM{client: client, provider: provider, kind: kind}, nil
}

func providerKind(provider string) (evidence.Kind, error) {
	switch provider {
	case providerSEV:
		return evidence.KindSNP, nil
	case providerTDX:
		return evidence.KindTDX, nil
	}
	return "", fmt.Errorf("configfs-tsm provider %q: %w", provider, ErrUnsupported)
}

// Kind is evidence.KindSNP for sev_guest, evidence.KindTDX for tdx_guest.
func (c *ConfigfsTSM) Kind() evidence.Kind { return c.kind }

// Provider is the configfs-tsm provider name (sev_guest or tdx_guest).
func (c *ConfigfsTSM) Provider() string { return c.provider }

// Quote gets a report through configfs-tsm.
func (c *ConfigfsTSM) Quote(ctx context.Context, reportData [ReportDataSize]byte) (rep, certTable []byte, err error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, fmt.Errorf("getting %s report through configfs-tsm: %w", c.provider, err)
	}
	in := reportData // report.Request does not copy InBlob
	resp, err := report.Get(c.client, &report.Request{InBlob: in[:], GetAuxBlob: c.kind == evidence.KindSNP})
	if err != nil {
		return nil, nil, fmt.Errorf("getting %s report through configfs-tsm: %w", c.provider, err)
	}
	if p := strings.TrimSpace(resp.Provider); p != c.provider {
		return nil, nil, fmt.Errorf("%w: configfs-tsm provider changed from %q to %q", ErrBadReport, c.provider, p)
	}
	switch c.kind {
	case evidence.KindSNP:
		if err := checkSNPReport(resp.OutBlob, reportData); err != nil {
			return nil, nil, err
		}
		if err := checkCertTable(resp.AuxBlob); err != nil {
			return nil, nil, err
		}
		if len(resp.AuxBlob) == 0 {
			resp.AuxBlob = nil
		}
		return resp.OutBlob, resp.AuxBlob, nil
	default:
		if err := checkTDXQuote(resp.OutBlob, reportData); err != nil {
			return nil, nil, err
		}
		return resp.OutBlob, nil, nil
	}
}

// Close does nothing: no entry stays open between quotes.
func (c *ConfigfsTSM) Close() error { return nil }

// dirClient is a configfsi.Client on the files of a sysfs tree mounted at
// sysDir: configfs-tsm paths ("/sys/kernel/config/tsm/...") are taken
// relative to sysDir.
type dirClient struct {
	sysDir string
}

func (d *dirClient) real(name string) (string, error) {
	rest, ok := strings.CutPrefix(path.Clean(name), "/sys/")
	if !ok {
		return "", fmt.Errorf("configfs path %q is not under /sys", name)
	}
	return filepath.Join(d.sysDir, rest), nil
}

func (d *dirClient) MkdirTemp(dir, pattern string) (string, error) {
	r, err := d.real(dir)
	if err != nil {
		return "", err
	}
	made, err := os.MkdirTemp(r, pattern)
	if err != nil {
		return "", err
	}
	return path.Join(dir, filepath.Base(made)), nil
}

func (d *dirClient) ReadFile(name string) ([]byte, error) {
	r, err := d.real(name)
	if err != nil {
		return nil, err
	}
	return os.ReadFile(r)
}

func (d *dirClient) WriteFile(name string, contents []byte) error {
	r, err := d.real(name)
	if err != nil {
		return err
	}
	// configfs attributes exist already; O_TRUNC is ignored by configfs.
	f, err := os.OpenFile(r, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if _, err := f.Write(contents); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// RemoveAll removes a report entry; configfs removes its attributes with
// the directory (rmdir), so it is a single remove, as in linuxtsm.
func (d *dirClient) RemoveAll(name string) error {
	r, err := d.real(name)
	if err != nil {
		return err
	}
	return os.Remove(r)
}

func (d *dirClient) ReadDir(dirname string) ([]os.DirEntry, error) {
	r, err := d.real(dirname)
	if err != nil {
		return nil, err
	}
	return os.ReadDir(r)
}
