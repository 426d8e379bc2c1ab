package spec

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

const goodYAML = `
name: demo
tee: sim
vcpus: 2
memory: 1GiB
image:
  kernel: vmlinuz
  initrd: initrd.img
  cmdline: "console=ttyS0"
  os_disk: os.img
temp_disk_size: 4GiB
verifier: 127.0.0.1:8443
firmware:
  kind: seabios
`

// seabiosLines is the SeaBIOS opt-in of goodYAML (a direct-boot image).
const seabiosLines = "firmware:\n  kind: seabios\n"

// directYAML is goodYAML without its firmware choice.
var directYAML = strings.Replace(goodYAML, seabiosLines, "", 1)

// imageDir writes the files goodYAML names.
func imageDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, f := range []string{"vmlinuz", "initrd.img", "os.img", "OVMF.fd", "svsm.igvm"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func parse(t *testing.T, y, dir string) (*Spec, error) {
	t.Helper()
	s, err := ParseYAML([]byte(y), dir)
	if err != nil {
		return nil, err
	}
	if err := s.Resolve(); err != nil {
		return nil, err
	}
	return s, s.Validate(ValidateOptions{})
}

func TestParseGood(t *testing.T) {
	dir := imageDir(t)
	s, err := parse(t, goodYAML, dir)
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	if s.Image.Kernel != filepath.Join(dir, "vmlinuz") || s.Image.OSDisk != filepath.Join(dir, "os.img") {
		t.Errorf("paths not made absolute: %+v", s.Image)
	}
	if s.Memory != 1<<30 || s.TempDiskSize != 4<<30 {
		t.Errorf("sizes: %v %v", s.Memory, s.TempDiskSize)
	}
	if s.Firmware.Kind != FirmwareSeaBIOS || s.Firmware.Path != DefaultSeaBIOS || s.VTPM != VTPMSwtpm || s.TPMDevice != "tpm-crb" || s.CPU != "max" || s.SNP.Policy != DefaultSNPPolicy {
		t.Errorf("sim defaults not applied: %+v", s)
	}
	// The JSON form the CLI sends parses back to the same spec.
	b, err := jsonMarshal(s)
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseJSON(b)
	if err != nil {
		t.Fatalf("ParseJSON(round trip): %v\n%s", err, b)
	}
	if *back != *s {
		t.Errorf("JSON round trip changed the spec:\n%+v\n%+v", back, s)
	}
}

func TestManifest(t *testing.T) {
	dir := imageDir(t)
	mdir := filepath.Join(dir, "out")
	os.Mkdir(mdir, 0o755)
	for _, f := range []string{"k", "i", "d"} {
		os.WriteFile(filepath.Join(mdir, f), []byte("x"), 0o644)
	}
	os.WriteFile(filepath.Join(mdir, "manifest.json"),
		[]byte(`{"kernel":"k","initrd":"i","cmdline":"console=ttyS0 root=x","os_disk":"d","reference_values":{"x":1}}`), 0o644)
	y := "name: m\ntee: sim\nvcpus: 1\nmemory: 512MiB\nverifier: localhost:1\nimage:\n  manifest: out/manifest.json\n  cmdline: override\n" + seabiosLines
	s, err := parse(t, y, dir)
	if err != nil {
		t.Fatal(err)
	}
	if s.Image.Kernel != filepath.Join(mdir, "k") || s.Image.Initrd != filepath.Join(mdir, "i") || s.Image.OSDisk != filepath.Join(mdir, "d") {
		t.Errorf("manifest paths: %+v", s.Image)
	}
	if s.Image.Cmdline != "override" {
		t.Errorf("spec cmdline should override the manifest: %q", s.Image.Cmdline)
	}
	for name, body := range map[string]string{
		"no kernel":  `{"initrd":"i"}`,
		"not json":   `kernel: k`,
		"trailing":   `{"kernel":"k","initrd":"i"} {}`,
		"wrong type": `{"kernel":1,"initrd":"i"}`,
	} {
		if _, err := ParseManifest([]byte(body)); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: ParseManifest error = %v, want ErrInvalid", name, err)
		}
	}
}

func TestRejects(t *testing.T) {
	dir := imageDir(t)
	snp := "\ntee: sev-snp\nfirmware:\n  kind: ovmf\n  path: " + filepath.Join(dir, "OVMF.fd") + "\n"
	tdx := "\ntee: tdx\nfirmware:\n  kind: ovmf\n  path: " + filepath.Join(dir, "OVMF.fd") + "\n"
	edit := func(old, new string) string { return strings.Replace(goodYAML, old, new, 1) }
	hw := func(old, new string) string { return strings.Replace(directYAML, old, new, 1) }
	tests := map[string]struct {
		yaml    string
		wantSub string
	}{
		"unknown key":        {yaml: goodYAML + "colour: red\n", wantSub: "colour"},
		"two documents":      {yaml: goodYAML + "---\nname: x\n", wantSub: "more than one"},
		"bad name":           {yaml: edit("name: demo", "name: Demo_1"), wantSub: "name"},
		"name too long":      {yaml: edit("name: demo", "name: "+strings.Repeat("a", 33)), wantSub: "name"},
		"bad tee":            {yaml: edit("tee: sim", "tee: sgx"), wantSub: "tee"},
		"zero vcpus":         {yaml: edit("vcpus: 2", "vcpus: 0"), wantSub: "vcpus"},
		"tiny memory":        {yaml: edit("memory: 1GiB", "memory: 64MiB"), wantSub: "memory"},
		"odd memory":         {yaml: edit("memory: 1GiB", "memory: 1000000000"), wantSub: "memory"},
		"bad size":           {yaml: edit("memory: 1GiB", "memory: 1.5GiB"), wantSub: "size"},
		"no port":            {yaml: edit("verifier: 127.0.0.1:8443", "verifier: 127.0.0.1"), wantSub: "verifier"},
		"port zero":          {yaml: edit("verifier: 127.0.0.1:8443", "verifier: 127.0.0.1:0"), wantSub: "verifier"},
		"ipv6 verifier":      {yaml: edit("verifier: 127.0.0.1:8443", `verifier: "[::1]:8443"`), wantSub: "IPv6"},
		"comma host":         {yaml: edit("verifier: 127.0.0.1:8443", "verifier: a,b:8443"), wantSub: "verifier"},
		"missing kernel":     {yaml: edit("  kernel: vmlinuz\n", ""), wantSub: "image.kernel"},
		"kernel not found":   {yaml: edit("kernel: vmlinuz", "kernel: nope"), wantSub: "image.kernel"},
		"comma in path":      {yaml: edit("os_disk: os.img", "os_disk: a,b.img"), wantSub: "os_disk"},
		"newline in cmdline": {yaml: edit(`cmdline: "console=ttyS0"`, `cmdline: "a\nb"`), wantSub: "cmdline"},
		"sim direct image":   {yaml: directYAML, wantSub: "built for direct boot"},
		"sim direct opt-in":  {yaml: directYAML, wantSub: "firmware: {kind: seabios}"},
		"sim ovmf direct":    {yaml: edit("kind: seabios", "kind: ovmf"), wantSub: "built for direct boot"},
		"sim bad firmware":   {yaml: edit("kind: seabios", "kind: igvm"), wantSub: "sim guests boot ovmf"},
		"sim with svsm":      {yaml: goodYAML + "vtpm: svsm\n", wantSub: "vtpm"},
		"sim bad tpm device": {yaml: goodYAML + "tpm_device: tpm-spapr\n", wantSub: "tpm_device"},
		"debug policy":       {yaml: goodYAML + "snp:\n  policy: 0xb0000\n", wantSub: "debug"},
		"migration agent":    {yaml: goodYAML + "snp:\n  policy: 0x70000\n", wantSub: "migration"},
		"no mbo bit":         {yaml: goodYAML + "snp:\n  policy: 0x20000\n", wantSub: "bit 16"},
		"bad host data":      {yaml: goodYAML + "snp:\n  host_data: AAAA\n", wantSub: "host_data"},
		"sim with tdx":       {yaml: goodYAML + "tdx:\n  qgs_socket: /x\n", wantSub: "tdx"},
		"snp seabios":        {yaml: edit("\ntee: sim\n", "\ntee: sev-snp\n"), wantSub: "seabios"},
		"snp no firmware":    {yaml: hw("\ntee: sim\n", "\ntee: sev-snp\n"), wantSub: "firmware.path"},
		"snp host swtpm":     {yaml: hw("\ntee: sim\n", snp) + "vtpm: swtpm\n", wantSub: "host-visible swtpm"},
		"snp svsm no igvm":   {yaml: hw("\ntee: sim\n", snp) + "vtpm: svsm\n", wantSub: "igvm"},
		"snp cbitpos":        {yaml: hw("\ntee: sim\n", snp) + "snp:\n  cbitpos: 7\n", wantSub: "cbitpos"},
		"tdx host swtpm":     {yaml: hw("\ntee: sim\n", tdx) + "vtpm: swtpm\n", wantSub: "host-visible swtpm"},
		"tdx igvm":           {yaml: strings.Replace(hw("\ntee: sim\n", tdx), "kind: ovmf", "kind: igvm", 1), wantSub: "tdx guests need OVMF"},
		"tdx snp fields":     {yaml: hw("\ntee: sim\n", tdx) + "snp:\n  policy: 0x30000\n", wantSub: "snp"},
		"size is a map":      {yaml: edit("memory: 1GiB", "memory: {a: 1}"), wantSub: "scalar"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := parse(t, tc.yaml, dir)
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error = %v, want ErrInvalid", err)
			}
			if !strings.Contains(err.Error(), tc.wantSub) {
				t.Fatalf("error %q does not mention %q", err, tc.wantSub)
			}
		})
	}
}

func TestHardwareSpecsAccepted(t *testing.T) {
	dir := imageDir(t)
	tests := map[string]struct {
		extra string
		opts  ValidateOptions
	}{
		"snp ovmf":          {extra: "tee: sev-snp\nfirmware:\n  kind: ovmf\n  path: OVMF.fd\n"},
		"snp igvm svsm":     {extra: "tee: sev-snp\nvtpm: svsm\nfirmware:\n  kind: igvm\n  path: svsm.igvm\n"},
		"snp swtpm in dev":  {extra: "tee: sev-snp\nvtpm: swtpm\nfirmware:\n  kind: ovmf\n  path: OVMF.fd\n", opts: ValidateOptions{AllowHostVTPM: true}},
		"tdx":               {extra: "tee: tdx\nfirmware:\n  kind: ovmf\n  path: OVMF.fd\n"},
		"sim without vtpm":  {extra: "tee: sim\nvtpm: none\n" + seabiosLines},
		"sim with tpm-tis":  {extra: "tee: sim\ntpm_device: tpm-tis\n" + seabiosLines},
		"snp with hostdata": {extra: "tee: sev-snp\nfirmware:\n  kind: ovmf\n  path: OVMF.fd\nsnp:\n  host_data: " + strings.Repeat("A", 43) + "=\n"},
	}
	base := strings.Replace(directYAML, "tee: sim\n", "", 1)
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			s, err := ParseYAML([]byte(base+tc.extra), dir)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Resolve(); err != nil {
				t.Fatal(err)
			}
			if err := s.Validate(tc.opts); err != nil {
				t.Fatalf("Validate: %v", err)
			}
		})
	}
}

func TestSize(t *testing.T) {
	tests := map[string]struct {
		in      string
		want    Size
		wantErr bool
	}{
		"mib":      {in: "512MiB", want: 512 << 20},
		"g":        {in: "4G", want: 4 << 30},
		"bytes":    {in: "1048576", want: 1 << 20},
		"tib":      {in: "1TiB", want: 1 << 40},
		"neg":      {in: "-1MiB", wantErr: true},
		"plus":     {in: "+1MiB", wantErr: true},
		"space":    {in: "1 MiB", wantErr: true},
		"overflow": {in: "99999999999TiB", wantErr: true},
		"empty":    {in: "", wantErr: true},
		"lower":    {in: "1gib", wantErr: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := ParseSize(tc.in)
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Fatalf("ParseSize(%q) = %v, %v", tc.in, got, err)
			}
			if err == nil {
				back, err := ParseSize(got.String())
				if err != nil || back != got {
					t.Fatalf("String round trip %q: %v %v", got.String(), back, err)
				}
			}
		})
	}
}

func FuzzParseYAML(f *testing.F) {
	f.Add([]byte(goodYAML))
	f.Add([]byte("name: [a, b]\nmemory: &x 1G\nvcpus: *x\n"))
	f.Add([]byte("{}"))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseYAML(b, "/base")
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v does not match ErrInvalid", err)
			}
			return
		}
		// The CLI parses YAML and sends JSON to the daemon: what it
		// accepts must reach the daemon unchanged.
		checkJSONRoundTrip(t, s)
	})
}

// checkJSONRoundTrip asserts that s re-encodes to JSON that parses back to
// s, and that validation judges both the same.
func checkJSONRoundTrip(t *testing.T, s *Spec) {
	t.Helper()
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatalf("encoding an accepted spec: %v", err)
	}
	again, err := ParseJSON(b)
	if err != nil {
		t.Fatalf("re-encoded spec %s refused: %v", b, err)
	}
	if !reflect.DeepEqual(again, s) {
		t.Fatalf("round trip changed the spec:\n%+v\n%+v", s, again)
	}
	opts := ValidateOptions{SkipFileChecks: true}
	if e1, e2 := s.Validate(opts), again.Validate(opts); (e1 == nil) != (e2 == nil) {
		t.Fatalf("validation differs after a round trip: %v, %v", e1, e2)
	} else if e1 != nil && !errors.Is(e1, ErrInvalid) {
		t.Fatalf("Validate error %v does not match ErrInvalid", e1)
	}
}

func FuzzParseJSON(f *testing.F) {
	f.Add([]byte(`{"name":"a","tee":"sim","vcpus":1,"memory":"1GiB","verifier":"a:1","image":{"kernel":"/k","initrd":"/i"}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseJSON(b)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v does not match ErrInvalid", err)
			}
			return
		}
		checkJSONRoundTrip(t, s)
	})
}

func FuzzParseManifest(f *testing.F) {
	f.Add([]byte(`{"kernel":"k","initrd":"i","cmdline":"c","os_disk":"d"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		if _, err := ParseManifest(b); err != nil && !errors.Is(err, ErrInvalid) {
			t.Fatalf("error %v does not match ErrInvalid", err)
		}
	})
}
