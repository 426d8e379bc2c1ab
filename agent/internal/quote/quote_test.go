package quote

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-configfs-tsm/configfs/configfsi"
	"github.com/google/go-configfs-tsm/configfs/faketsm"
	"github.com/google/go-sev-guest/abi"
	tdxlabi "github.com/google/go-tdx-guest/client/linuxabi"

	"github.com/confidant-cvm/confidant/agent/internal/boot"
	"github.com/confidant-cvm/confidant/shared/agentconfig"
	"github.com/confidant-cvm/confidant/shared/evidence"
	"github.com/confidant-cvm/confidant/shared/simsp"
	"github.com/confidant-cvm/confidant/shared/tee/snp"
)

func TestSimQuote(t *testing.T) {
	rd := reportDataOf("sim quote")
	p := serveSim(t, func(got [simsp.ReportDataSize]byte) ([]byte, []byte, error) { return signFor(got, 0) })
	if p.Kind() != evidence.KindSimSNP {
		t.Errorf("Kind() = %q, want %q", p.Kind(), evidence.KindSimSNP)
	}
	report, table, err := p.Quote(context.Background(), rd)
	if err != nil {
		t.Fatalf("Quote: %v", err)
	}
	verifySim(t, report, table, rd)
	// The report binds this request's data and no other.
	other := reportDataOf("another request")
	if _, err := snp.Verify(report, table, snp.Options{SimRoot: signer.RootCert(), ReportData: other[:], AllowSMT: true}); !errors.Is(err, snp.ErrReportData) {
		t.Errorf("snp.Verify with other REPORT_DATA = %v, want ErrReportData", err)
	}
}

func TestSimQuoteErrors(t *testing.T) {
	rd := reportDataOf("sim quote errors")
	tests := map[string]struct {
		sign    simsp.ReportSignerFunc
		wantErr error
	}{
		"report for other data": {
			sign:    func([simsp.ReportDataSize]byte) ([]byte, []byte, error) { return signFor(reportDataOf("replayed"), 0) },
			wantErr: ErrBadReport,
		},
		"short report": {
			sign: func(got [simsp.ReportDataSize]byte) ([]byte, []byte, error) {
				r, tb, err := signFor(got, 0)
				return r[:len(r)-1], tb, err
			},
			wantErr: ErrBadReport,
		},
		"oversize cert table": {
			sign: func(got [simsp.ReportDataSize]byte) ([]byte, []byte, error) {
				r, _, err := signFor(got, 0)
				return r, make([]byte, evidence.MaxCertTableSize+1), err
			},
			// simsp refuses the response line before our own check.
			wantErr: simsp.ErrRemote,
		},
		"host refuses": {
			sign:    func([simsp.ReportDataSize]byte) ([]byte, []byte, error) { return nil, nil, errors.New("no") },
			wantErr: simsp.ErrRemote,
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			p := serveSim(t, tt.sign)
			_, _, err := p.Quote(context.Background(), rd)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Quote = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func TestSimQuoteContext(t *testing.T) {
	block := make(chan struct{})
	defer close(block)
	p := serveSim(t, func(got [simsp.ReportDataSize]byte) ([]byte, []byte, error) {
		<-block
		return signFor(got, 0)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, _, err := p.Quote(ctx, reportDataOf("slow")); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Quote = %v, want DeadlineExceeded", err)
	}
}

// tsm returns a fake configfs-tsm whose provider is provider and whose
// outblob is made by out from the written inblob.
func tsm(provider string, out func(inblob []byte) ([]byte, error), aux []byte) *faketsm.Client {
	sub := &faketsm.ReportSubsystem{
		MakeEntry: func() *faketsm.ReportEntry {
			return &faketsm.ReportEntry{InAttrs: map[string]*faketsm.ReportAttributeState{"inblob": {}, "privlevel": {}}}
		},
		CheckInAttr: func(_ *faketsm.ReportEntry, attr string, contents []byte) error {
			if attr != "inblob" || len(contents) > 64 {
				return syscall.EINVAL
			}
			return nil
		},
		ReadAttr: func(e *faketsm.ReportEntry, attr string) ([]byte, error) {
			switch attr {
			case "provider":
				return []byte(provider + "\n"), nil
			case "auxblob":
				return aux, nil
			case "outblob":
				return out(e.InAttrs["inblob"].Value)
			}
			return nil, os.ErrNotExist
		},
		Random: rand.Reader,
	}
	return &faketsm.Client{Subsystems: map[string]configfsi.Client{"report": sub}}
}

func snpOut(inblob []byte) ([]byte, error) {
	var rd [ReportDataSize]byte
	if len(inblob) != len(rd) {
		return nil, syscall.EINVAL
	}
	copy(rd[:], inblob)
	r, _, err := signFor(rd, 0)
	return r, err
}

func TestConfigfsTSMSNP(t *testing.T) {
	rd := reportDataOf("configfs-tsm")
	p, err := NewConfigfsTSM(tsm("sev_guest", snpOut, signer.CertTable()))
	if err != nil {
		t.Fatalf("NewConfigfsTSM: %v", err)
	}
	if p.Kind() != evidence.KindSNP || p.Provider() != "sev_guest" {
		t.Errorf("Kind, Provider = %q, %q; want sev-snp, sev_guest", p.Kind(), p.Provider())
	}
	report, table, err := p.Quote(context.Background(), rd)
	if err != nil {
		t.Fatalf("Quote: %v", err)
	}
	if !bytes.Equal(table, signer.CertTable()) {
		t.Error("certificate table is not the auxblob")
	}
	verifySim(t, report, table, rd)
}

func TestConfigfsTSMTDX(t *testing.T) {
	quote := func([]byte) ([]byte, error) { return bytes.Clone(recordedTDXQuote), nil }
	p, err := NewConfigfsTSM(tsm("tdx_guest", quote, nil))
	if err != nil {
		t.Fatalf("NewConfigfsTSM: %v", err)
	}
	if p.Kind() != evidence.KindTDX {
		t.Errorf("Kind = %q, want tdx", p.Kind())
	}
	report, table, err := p.Quote(context.Background(), recordedReportData(t))
	if err != nil || !bytes.Equal(report, recordedTDXQuote) || table != nil {
		t.Fatalf("Quote = %d bytes, %d, %v; want the recorded quote", len(report), len(table), err)
	}
	if _, _, err := p.Quote(context.Background(), reportDataOf("not the recorded one")); !errors.Is(err, ErrBadReport) {
		t.Errorf("Quote with other REPORT_DATA = %v, want ErrBadReport", err)
	}
}

func TestConfigfsTSMErrors(t *testing.T) {
	rd := reportDataOf("configfs-tsm errors")
	t.Run("unknown provider", func(t *testing.T) {
		// The stock fake's provider is "fake".
		c := &faketsm.Client{Subsystems: map[string]configfsi.Client{"report": faketsm.Report611(0)}}
		if _, err := NewConfigfsTSM(c); !errors.Is(err, ErrUnsupported) {
			t.Fatalf("NewConfigfsTSM = %v, want ErrUnsupported", err)
		}
	})
	t.Run("provider changes", func(t *testing.T) {
		c := tsm("sev_guest", snpOut, nil)
		p, err := NewConfigfsTSM(c)
		if err != nil {
			t.Fatal(err)
		}
		p.provider = "tdx_guest" // as if another module took over
		if _, _, err := p.Quote(context.Background(), rd); !errors.Is(err, ErrBadReport) {
			t.Fatalf("Quote = %v, want ErrBadReport", err)
		}
	})
	tests := map[string]struct {
		out     func([]byte) ([]byte, error)
		aux     []byte
		wantErr error
	}{
		"replayed report": {
			out:     func([]byte) ([]byte, error) { return snpOut([]byte(strings.Repeat("x", 64))) },
			wantErr: ErrBadReport,
		},
		"truncated report": {
			out: func(in []byte) ([]byte, error) {
				r, err := snpOut(in)
				return r[:100], err
			},
			wantErr: ErrBadReport,
		},
		"oversize auxblob": {
			out:     snpOut,
			aux:     make([]byte, evidence.MaxCertTableSize+1),
			wantErr: ErrBadReport,
		},
		"kernel error": {
			out:     func([]byte) ([]byte, error) { return nil, syscall.EIO },
			wantErr: syscall.EIO,
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			p, err := NewConfigfsTSM(tsm("sev_guest", tt.out, tt.aux))
			if err != nil {
				t.Fatal(err)
			}
			_, _, err = p.Quote(context.Background(), rd)
			if err == nil || (tt.wantErr != syscall.EIO && !errors.Is(err, tt.wantErr)) {
				t.Fatalf("Quote = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func TestSEVGuest(t *testing.T) {
	rd := reportDataOf("sev-guest")
	dev := &fakeSEVDevice{certs: signer.CertTable()}
	p, err := NewSEVGuest(dev, 0)
	if err != nil {
		t.Fatal(err)
	}
	if p.Kind() != evidence.KindSNP {
		t.Errorf("Kind = %q", p.Kind())
	}
	report, table, err := p.Quote(context.Background(), rd)
	if err != nil {
		t.Fatalf("Quote: %v", err)
	}
	if len(dev.requests) != 1 || dev.requests[0].ReportData != rd || dev.requests[0].Vmpl != 0 {
		t.Errorf("device saw requests %+v, want one for our REPORT_DATA at VMPL 0", dev.requests)
	}
	if !bytes.Equal(table, signer.CertTable()) {
		t.Error("certificate table not returned")
	}
	verifySim(t, report, table, rd)
	if err := p.Close(); err != nil || !dev.closed {
		t.Errorf("Close = %v, device closed %v", err, dev.closed)
	}
}

func TestSEVGuestVMPL(t *testing.T) {
	dev := &fakeSEVDevice{}
	p, err := NewSEVGuest(dev, 2)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := p.Quote(context.Background(), reportDataOf("vmpl")); err != nil {
		t.Fatal(err)
	}
	if dev.requests[0].Vmpl != 2 {
		t.Errorf("requested VMPL %d, want 2", dev.requests[0].Vmpl)
	}
	if _, err := NewSEVGuest(dev, 4); err == nil {
		t.Error("NewSEVGuest accepted VMPL 4")
	}
	if _, err := OpenSEVGuest(filepath.Join(t.TempDir(), "sev-guest"), 4); err == nil {
		t.Error("OpenSEVGuest accepted VMPL 4")
	}
}

func TestSEVGuestErrors(t *testing.T) {
	rd := reportDataOf("sev-guest errors")
	tests := map[string]struct {
		dev     *fakeSEVDevice
		wantErr error
	}{
		// go-sev-guest flattens firmware errors with %v: any error will do.
		"firmware error": {
			dev: &fakeSEVDevice{fwErr: abi.SevFirmwareStatus(0x16)},
		},
		"report for other data": {
			dev: &fakeSEVDevice{edit: func(r []byte) []byte {
				copy(r[snpReportDataOffset:], "tampered")
				return r
			}},
			wantErr: ErrBadReport,
		},
		"oversize cert table": {
			dev:     &fakeSEVDevice{certs: make([]byte, evidence.MaxCertTableSize+1)},
			wantErr: ErrBadReport,
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			p, err := NewSEVGuest(tt.dev, 0)
			if err != nil {
				t.Fatal(err)
			}
			_, _, err = p.Quote(context.Background(), rd)
			if err == nil || (tt.wantErr != nil && !errors.Is(err, tt.wantErr)) {
				t.Fatalf("Quote = %v, want %v", err, tt.wantErr)
			}
		})
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	p, _ := NewSEVGuest(&fakeSEVDevice{}, 0)
	if _, _, err := p.Quote(ctx, rd); !errors.Is(err, context.Canceled) {
		t.Errorf("Quote with cancelled context = %v", err)
	}
}

func TestTDXGuest(t *testing.T) {
	rd := recordedReportData(t)
	dev := &fakeTDXDevice{quote: recordedTDXQuote}
	p, err := NewTDXGuest(dev)
	if err != nil {
		t.Fatal(err)
	}
	if p.Kind() != evidence.KindTDX {
		t.Errorf("Kind = %q", p.Kind())
	}
	q, table, err := p.Quote(context.Background(), rd)
	if err != nil {
		t.Fatalf("Quote: %v", err)
	}
	if !bytes.Equal(q, recordedTDXQuote) || table != nil {
		t.Errorf("Quote returned %d bytes and a %d-byte table, want the recorded quote", len(q), len(table))
	}
	if len(dev.reportData) != 1 || dev.reportData[0] != rd {
		t.Errorf("TDREPORT requests %x, want one for our REPORT_DATA", dev.reportData)
	}
	if err := p.Close(); err != nil || !dev.closed {
		t.Errorf("Close = %v, closed %v", err, dev.closed)
	}
}

func TestTDXGuestErrors(t *testing.T) {
	rd := recordedReportData(t)
	truncated := recordedTDXQuote[:evidence.TDXQuoteMinSize+10]
	tests := map[string]struct {
		dev     *fakeTDXDevice
		rd      [ReportDataSize]byte
		wantErr error
	}{
		"other report data": {dev: &fakeTDXDevice{quote: recordedTDXQuote}, rd: reportDataOf("other"), wantErr: ErrBadReport},
		"short quote":       {dev: &fakeTDXDevice{quote: recordedTDXQuote[:100]}, rd: rd, wantErr: ErrBadReport},
		"truncated quote":   {dev: &fakeTDXDevice{quote: truncated}, rd: rd, wantErr: ErrBadReport},
		"busy":              {dev: &fakeTDXDevice{status: tdxlabi.GetQuoteInFlight}, rd: rd},
		"no quote service":  {dev: &fakeTDXDevice{status: tdxlabi.GetQuoteServiceUnavailable}, rd: rd},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			p, _ := NewTDXGuest(tt.dev)
			_, _, err := p.Quote(context.Background(), tt.rd)
			if err == nil || (tt.wantErr != nil && !errors.Is(err, tt.wantErr)) {
				t.Fatalf("Quote = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func FuzzCheckTDXQuote(f *testing.F) {
	f.Add(recordedTDXQuote)
	f.Add(recordedTDXQuote[:evidence.TDXQuoteMinSize])
	f.Add([]byte{4, 0, 2, 0})
	f.Fuzz(func(t *testing.T, q []byte) {
		var rd [ReportDataSize]byte
		if len(q) >= 48+520+64 {
			copy(rd[:], q[48+520:])
		}
		err := checkTDXQuote(q, rd)
		if err != nil && !errors.Is(err, ErrBadReport) {
			t.Fatalf("checkTDXQuote error %v does not match ErrBadReport", err)
		}
	})
}

// fakeTree is a fake sysfs and devtmpfs in a temporary directory.
type fakeTree struct {
	sys, dev string
}

func newFakeTree(t *testing.T) fakeTree {
	t.Helper()
	root := t.TempDir()
	ft := fakeTree{sys: filepath.Join(root, "sys"), dev: filepath.Join(root, "dev")}
	for _, d := range []string{ft.sys, ft.dev} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return ft
}

func (ft fakeTree) file(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func (ft fakeTree) port(t *testing.T, vport, name string, node bool) {
	t.Helper()
	ft.file(t, filepath.Join(ft.sys, "class/virtio-ports", vport, "name"), name+"\n")
	if node {
		ft.file(t, filepath.Join(ft.dev, vport), "")
	}
}

func (ft fakeTree) configfs(t *testing.T) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(ft.sys, "kernel/config/tsm/report"), 0o755); err != nil {
		t.Fatal(err)
	}
}

func TestDetect(t *testing.T) {
	goodTSM := tsm("sev_guest", snpOut, nil)
	badTSM := &faketsm.Client{Subsystems: map[string]configfsi.Client{"report": faketsm.Report611(0)}}
	tests := map[string]struct {
		setup    func(t *testing.T, ft fakeTree)
		tee      agentconfig.TEE
		configfs configfsi.Client
		wantType string
		wantErr  error
	}{
		"nothing": {
			setup:   func(*testing.T, fakeTree) {},
			wantErr: ErrNoTEE,
		},
		"sim port": {
			setup:    func(t *testing.T, ft fakeTree) { ft.port(t, "vport1p1", "confidant.sp", true) },
			tee:      agentconfig.TEESim,
			wantType: "*quote.Sim",
		},
		"sim port among others": {
			setup: func(t *testing.T, ft fakeTree) {
				ft.port(t, "vport0p1", "org.qemu.guest_agent.0", true)
				ft.port(t, "vport1p2", "confidant.sp", true)
			},
			tee:      agentconfig.TEESim,
			wantType: "*quote.Sim",
		},
		"sim port under another name": {
			setup:   func(t *testing.T, ft fakeTree) { ft.port(t, "vport1p1", "confidant.sp2", true) },
			tee:     agentconfig.TEESim,
			wantErr: ErrNoTEE,
		},
		"sim port without node": {
			setup:   func(t *testing.T, ft fakeTree) { ft.port(t, "vport1p1", "confidant.sp", false) },
			tee:     agentconfig.TEESim,
			wantErr: ErrNoTEE,
		},
		"two sim ports": {
			setup: func(t *testing.T, ft fakeTree) {
				ft.port(t, "vport1p1", "confidant.sp", true)
				ft.port(t, "vport2p1", "confidant.sp", true)
			},
			tee:     agentconfig.TEESim,
			wantErr: errAny,
		},
		"auto never picks the simulation": {
			setup:   func(t *testing.T, ft fakeTree) { ft.port(t, "vport1p1", "confidant.sp", true) },
			wantErr: ErrNoTEE,
		},
		"auto sev-guest": {
			setup:    func(t *testing.T, ft fakeTree) { ft.file(t, filepath.Join(ft.dev, "sev-guest"), "") },
			wantType: "*quote.SEVGuest",
		},
		"auto tdx_guest": {
			setup:    func(t *testing.T, ft fakeTree) { ft.file(t, filepath.Join(ft.dev, "tdx_guest"), "") },
			wantType: "*quote.TDXGuest",
		},
		"auto prefers configfs-tsm": {
			setup: func(t *testing.T, ft fakeTree) {
				ft.configfs(t)
				ft.file(t, filepath.Join(ft.dev, "sev-guest"), "")
			},
			configfs: goodTSM,
			wantType: "*quote.ConfigfsTSM",
		},
		"auto prefers sev-guest over tdx_guest": {
			setup: func(t *testing.T, ft fakeTree) {
				ft.file(t, filepath.Join(ft.dev, "tdx_guest"), "")
				ft.file(t, filepath.Join(ft.dev, "sev-guest"), "")
			},
			wantType: "*quote.SEVGuest",
		},
		"auto skips an unusable configfs-tsm": {
			setup: func(t *testing.T, ft fakeTree) {
				ft.configfs(t)
				ft.file(t, filepath.Join(ft.dev, "sev-guest"), "")
			},
			configfs: badTSM,
			wantType: "*quote.SEVGuest",
		},
		"configured configfs-tsm unusable": {
			setup:    func(t *testing.T, ft fakeTree) { ft.configfs(t) },
			tee:      agentconfig.TEEConfigfsTSM,
			configfs: badTSM,
			wantErr:  ErrUnsupported,
		},
		"configured tdx-guest absent": {
			setup:   func(t *testing.T, ft fakeTree) { ft.file(t, filepath.Join(ft.dev, "sev-guest"), "") },
			tee:     agentconfig.TEETDXGuest,
			wantErr: ErrNoTEE,
		},
		"configured configfs-tsm present": {
			setup:    func(t *testing.T, ft fakeTree) { ft.configfs(t) },
			tee:      agentconfig.TEEConfigfsTSM,
			configfs: goodTSM,
			wantType: "*quote.ConfigfsTSM",
		},
		"unknown kind": {
			setup:   func(*testing.T, fakeTree) {},
			tee:     "sgx",
			wantErr: ErrUnsupported,
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			ft := newFakeTree(t)
			tt.setup(t, ft)
			src, err := Detect(Options{TEE: tt.tee, SysDir: ft.sys, DevDir: ft.dev, Configfs: tt.configfs})
			if tt.wantErr != nil {
				if err == nil || (tt.wantErr != errAny && !errors.Is(err, tt.wantErr)) {
					t.Fatalf("Detect = %T, %v; want %v", src, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Detect: %v", err)
			}
			defer src.Close()
			if got := typeName(src); got != tt.wantType {
				t.Errorf("Detect chose %s, want %s", got, tt.wantType)
			}
		})
	}
}

// errAny stands for "some error" in tables.
var errAny = errors.New("any error")

func typeName(v any) string {
	switch v.(type) {
	case *Sim:
		return "*quote.Sim"
	case *SEVGuest:
		return "*quote.SEVGuest"
	case *TDXGuest:
		return "*quote.TDXGuest"
	case *ConfigfsTSM:
		return "*quote.ConfigfsTSM"
	}
	return "unknown"
}

// TestDetectSimPortName: the simulated TEE's port is found by its whole
// name, not by a prefix of it.
func TestDetectSimPortName(t *testing.T) {
	ft := newFakeTree(t)
	ft.port(t, "vport3p1", "confidant.sp", true)
	src, err := Detect(Options{TEE: agentconfig.TEESim, SimPort: "confidant.sp", SysDir: ft.sys, DevDir: ft.dev})
	if err != nil {
		t.Fatalf("Detect(confidant.sp) = %v", err)
	}
	src.Close()
	if _, err := Detect(Options{TEE: agentconfig.TEESim, SimPort: "confidant", SysDir: ft.sys, DevDir: ft.dev}); !errors.Is(err, ErrNoTEE) {
		t.Errorf("Detect of a prefix = %v, want ErrNoTEE", err)
	}
}

func TestOpenConfigfsPath(t *testing.T) {
	ft := newFakeTree(t)
	if _, err := Open(agentconfig.TEEConfigfsTSM, filepath.Join(ft.sys, "somewhere/else"), Options{}); err == nil {
		t.Error("Open accepted a configfs path that is not .../kernel/config/tsm/report")
	}
	// On a plain directory, configfs semantics are missing: creating a report
	// entry works, reading its generation does not.
	ft.configfs(t)
	_, err := Open(agentconfig.TEEConfigfsTSM, filepath.Join(ft.sys, boot.ConfigfsReportDir), Options{})
	if err == nil {
		t.Fatal("Open on a plain directory succeeded")
	}
	ents, _ := os.ReadDir(filepath.Join(ft.sys, boot.ConfigfsReportDir))
	if len(ents) != 0 {
		t.Errorf("report entry left behind: %v", ents)
	}
}

func TestDirClientPaths(t *testing.T) {
	d := &dirClient{sysDir: "/tmp/fake/sys"}
	tests := map[string]struct {
		in, want string
		wantErr  bool
	}{
		"report dir": {in: "/sys/kernel/config/tsm/report", want: "/tmp/fake/sys/kernel/config/tsm/report"},
		"attribute":  {in: "/sys/kernel/config/tsm/report/entry1/outblob", want: "/tmp/fake/sys/kernel/config/tsm/report/entry1/outblob"},
		"escape":     {in: "/sys/../etc/passwd", wantErr: true},
		"not sys":    {in: "/proc/self", wantErr: true},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := d.real(tt.in)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Fatalf("real(%q) = %q, %v; want %q, error %v", tt.in, got, err, tt.want, tt.wantErr)
			}
		})
	}
}
