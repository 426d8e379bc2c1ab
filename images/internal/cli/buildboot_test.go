package cli

import (
	"bytes"
	"context"
	"crypto/x509"
	"debug/pe"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/confidant-cvm/confidant/images/internal/build"
	"github.com/confidant-cvm/confidant/images/internal/measure"
	"github.com/confidant-cvm/confidant/images/internal/uki"
	"github.com/confidant-cvm/confidant/shared/measure/snp"
	"github.com/confidant-cvm/confidant/shared/uefi"
)

// newSigningPair makes a Secure Boot key (unencrypted PEM RSA) and its
// self-signed certificate with openssl, as images/README.md tells a
// builder to.
func newSigningPair(t *testing.T, dir, name string) (key, cert string) {
	t.Helper()
	key, cert = filepath.Join(dir, name+".key"), filepath.Join(dir, name+".pem")
	out, err := exec.Command("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650",
		"-subj", "/CN="+name+" Secure Boot key/", "-keyout", key, "-out", cert).CombinedOutput()
	if err != nil {
		t.Fatalf("openssl req: %v\n%s", err, out)
	}
	return key, cert
}

// uefiArgs are the arguments of a sim build with boot uefi, signed with
// key and cert.
func (fx buildFixture) uefiArgs(out, diskKey, sbKey, sbCert string, extra ...string) []string {
	return fx.args(out, diskKey, append([]string{"--boot", "uefi", "--secure-boot-key", sbKey, "--secure-boot-cert", sbCert}, extra...)...)
}

// uefiReferenceFile is the sim section of the reference values with PCRs.
type uefiReferenceFile struct {
	Sim struct {
		Measurements map[string]build.ReferenceValue `json:"measurements"`
		PCRs         map[string]map[string][]string  `json:"pcrs"`
	} `json:"sim-sev-snp"`
}

// TestBuildUEFI: the default build signs a UKI that sbverify accepts with
// the builder's certificate and refuses with another, puts it byte for
// byte on the ESP, enrolls the certificate in the variable store, and
// records the PCRs that shared/uefi predicts for exactly those files, and
// launch measurements over the OVMF code alone.
func TestBuildUEFI(t *testing.T) {
	fx := newBuildFixture(t)
	sbKey, sbCert := newSigningPair(t, fx.dir, "builder")
	_, otherCert := newSigningPair(t, fx.dir, "other")
	out := filepath.Join(fx.dir, "out")
	diskKey := filepath.Join(fx.dir, "disk.key")
	const uuid = "0b7d2c1e-5a4f-4e3d-9c2b-1a0f9e8d7c6b"
	args := fx.uefiArgs(out, diskKey, sbKey, sbCert, "--generate-key", "--vcpus", "1,2", "--source-date-epoch", "1700000000", "--uuid", uuid)
	// The default boot is uefi: drop the fixture's --boot.
	args = slices.Delete(args, slices.Index(args, "--boot"), slices.Index(args, "--boot")+2)
	args = slices.Delete(args, slices.Index(args, "--boot"), slices.Index(args, "--boot")+2)
	stdout, stderr, err := runStreams(t, args...)
	if err != nil {
		t.Fatalf("build: %v\n%s", err, stderr)
	}
	for _, want := range []string{"uki        " + filepath.Join(out, "uki.efi"), "predicted PCR 4 ", "predicted PCR 7 ", "predicted PCR 11 "} {
		if !strings.Contains(stdout, want) {
			t.Errorf("stdout lacks %q:\n%s", want, stdout)
		}
	}
	ents, _ := os.ReadDir(out)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	wantNames := []string{"agent.yaml", "esp.img", "initrd.img", "manifest.json", "os.img", "reference-values.json", "release-policy.rego", "uefi-vars.fd", "uki.efi", "vmlinuz"}
	if !slices.Equal(names, wantNames) {
		t.Errorf("output holds %v, want %v", names, wantNames)
	}
	at := func(name string) string { return filepath.Join(out, name) }
	read := func(name string) []byte {
		b, err := os.ReadFile(at(name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}

	// The manifest: boot uefi, nothing for a direct boot, every file's digest.
	var m build.Manifest
	dec := json.NewDecoder(bytes.NewReader(read("manifest.json")))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		t.Fatal(err)
	}
	if m.Boot != "uefi" || m.Kernel != "" || m.Initrd != "" || m.Cmdline != "" || m.OSDisk != "os.img" ||
		m.UKI != "uki.efi" || m.ESP != "esp.img" || m.UEFIVars != "uefi-vars.fd" || m.Firmware != measure.DefaultSimOVMFCode {
		t.Errorf("manifest = %+v", m)
	}
	if len(m.Files) != 9 {
		t.Errorf("manifest lists %d files, want 9", len(m.Files))
	}
	for name, d := range m.Files {
		if sum, size := sha256File(t, at(name)); d.SHA256 != sum || d.Size != size {
			t.Errorf("manifest digest of %s = %+v, file has %s %d", name, d, sum, size)
		}
	}

	// sbverify: the builder's certificate, not another.
	ctx := context.Background()
	if err := uki.Verify(ctx, sbCert, at("uki.efi")); err != nil {
		t.Errorf("sbverify --cert builder: %v", err)
	}
	if err := uki.Verify(ctx, otherCert, at("uki.efi")); !errors.Is(err, uki.ErrTool) {
		t.Errorf("sbverify --cert other: %v, want a refusal", err)
	}
	// The UKI holds the kernel, the initramfs of the output and the command line.
	image := read("uki.efi")
	f, err := pe.NewFile(bytes.NewReader(image))
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string][]byte{".linux": read("vmlinuz"), ".initrd": read("initrd.img"), ".cmdline": []byte(DefaultCmdline)} {
		s := f.Section(name)
		if s == nil {
			t.Fatalf("the UKI has no %s", name)
		}
		data, _ := s.Data()
		if int(s.VirtualSize) != len(want) || !bytes.Equal(data[:s.VirtualSize], want) {
			t.Errorf("the UKI's %s is not the image's", name)
		}
	}
	osrel, _ := f.Section(".osrel").Data()
	if !strings.Contains(string(osrel), "IMAGE_ID=tiny\n") || !strings.Contains(string(osrel), `IMAGE_VERSION="1.0"`) {
		t.Errorf("os-release:\n%s", osrel)
	}
	// The ESP carries it byte for byte (mtools' mtype reads it).
	mtype := exec.Command("mtype", "-i", at("esp.img"), "::/EFI/BOOT/BOOTX64.EFI")
	mtype.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1")
	if got, err := mtype.Output(); err != nil || !bytes.Equal(got, image) {
		t.Errorf("mtype of the ESP's BOOTX64.EFI: %d bytes, %v; want the UKI's %d", len(got), err, len(image))
	}

	// The variable store: the template's size, Secure Boot on, the
	// builder's certificate as PK, KEK and db.
	vars := read("uefi-vars.fd")
	if tmpl, _ := os.ReadFile(build.DefaultOVMFVars); len(vars) != len(tmpl) {
		t.Errorf("variable store of %d bytes, the template has %d", len(vars), len(tmpl))
	}
	store, err := uefi.ParseVarStore(vars)
	if err != nil {
		t.Fatal(err)
	}
	if !store.SecureBootEnabled() {
		t.Error("Secure Boot is not enabled in the variable store")
	}
	certPEM, _ := os.ReadFile(sbCert)
	blk, _ := pem.Decode(certPEM)
	cert, _ := x509.ParseCertificate(blk.Bytes)
	owner, _ := uefi.ParseGUID(build.SecureBootOwner)
	// PK's owner is the global variable GUID, as OVMF's EnrollDefaultKeys
	// writes it; KEK's and db's the build's.
	for _, v := range []struct {
		name        string
		guid, owner uefi.GUID
	}{{"PK", uefi.GlobalVariableGUID, uefi.GlobalVariableGUID}, {"KEK", uefi.GlobalVariableGUID, owner}, {"db", uefi.ImageSecurityDatabaseGUID, owner}} {
		got, ok := store.Get(v.name, v.guid)
		if !ok {
			t.Fatalf("no %s", v.name)
		}
		lists, err := uefi.ParseSignatureLists(got.Data)
		if err != nil || len(lists) != 1 || lists[0].Type != uefi.CertX509GUID || len(lists[0].Entries) != 1 ||
			!bytes.Equal(lists[0].Entries[0].Data, cert.Raw) || lists[0].Entries[0].Owner != v.owner {
			t.Errorf("%s = %+v, %v; want the builder's certificate", v.name, lists, err)
		}
	}

	// PCRs: exactly what shared/uefi predicts and replays for these files,
	// in the manifest (with the events) and the reference values.
	events, err := uefi.PredictOS(image, store)
	if err != nil {
		t.Fatal(err)
	}
	replayed := uefi.Replay(events)
	var refs uefiReferenceFile
	if err := json.Unmarshal(read("reference-values.json"), &refs); err != nil {
		t.Fatal(err)
	}
	for _, i := range []int{4, 7, 11} {
		want := hex.EncodeToString(replayed[i])
		k := map[int]string{4: "4", 7: "7", 11: "11"}[i]
		if m.PCRs[k] != want || !slices.Equal(refs.Sim.PCRs["sha256"][k], []string{want}) {
			t.Errorf("PCR %d: manifest %s, reference values %v; predicted %s", i, m.PCRs[k], refs.Sim.PCRs["sha256"][k], want)
		}
	}
	if len(m.PCRs) != 3 || len(refs.Sim.PCRs["sha256"]) != 3 {
		t.Errorf("PCRs beyond 4, 7 and 11: %v", m.PCRs)
	}
	if len(m.PCREvents) != len(events) {
		t.Fatalf("manifest records %d events, predicted %d", len(m.PCREvents), len(events))
	}
	for i, e := range events {
		got := m.PCREvents[i]
		if got.PCR != e.PCR || got.Type != e.Type || got.Digest != hex.EncodeToString(e.Digest) || got.Description != e.Desc || got.TypeName == "" {
			t.Errorf("event %d: manifest %+v, predicted %+v", i, got, e)
		}
	}

	// Launch measurements: the OVMF code alone, as hostd computes for a
	// UEFI guest; measure --manifest agrees.
	code, err := os.ReadFile(measure.DefaultSimOVMFCode)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{1, 2} {
		d, err := snp.SimLaunchDigest(snp.SNPParams{OVMF: code, VCPUs: n, VCPUType: "EPYC-v4"})
		if err != nil {
			t.Fatal(err)
		}
		want := hex.EncodeToString(d[:])
		if rv, ok := refs.Sim.Measurements[want]; !ok || rv.VCPUs != n {
			t.Errorf("%d vCPUs: %s is not in the reference values %v", n, want, refs.Sim.Measurements)
		}
		got, stderr, err := runStreams(t, "measure", "--sim", "--manifest", at("manifest.json"), "--vcpus", map[int]string{1: "1", 2: "2"}[n])
		if err != nil || got != want+"\n" {
			t.Errorf("measure --sim --manifest: %q, %v\n%s", got, err, stderr)
		}
	}
	// The release policy is the affirming-only one.
	if !bytes.Contains(read("release-policy.rego"), []byte("package "+build.ReleasePackageSimUEFI+"\n")) {
		t.Error("the release policy is not the simulated UEFI image's")
	}

	// measure predicts the same, from the files or the manifest.
	for _, margs := range [][]string{
		{"measure", "--uki", at("uki.efi"), "--uefi-vars", at("uefi-vars.fd"), "--json"},
		{"measure", "--pcrs", "--manifest", at("manifest.json"), "--output-format", "json"},
	} {
		got, stderr, err := runStreams(t, margs...)
		if err != nil {
			t.Fatalf("%v: %v\n%s", margs, err, stderr)
		}
		var p pcrPrediction
		if err := json.Unmarshal([]byte(got), &p); err != nil {
			t.Fatal(err)
		}
		if !maps.Equal(p.PCRs["sha256"], m.PCRs) || !slices.Equal(p.Events, m.PCREvents) {
			t.Errorf("%v printed %+v, the manifest has %v", margs, p, m.PCRs)
		}
	}
	text, _, err := runStreams(t, "measure", "--uki", at("uki.efi"), "--uefi-vars", at("uefi-vars.fd"))
	if err != nil || !strings.Contains(text, "PCR 11 "+m.PCRs["11"]) || !strings.Contains(text, "EV_EFI_BOOT_SERVICES_APPLICATION") ||
		!strings.Contains(text, "PCRs 0-3 are not predicted") {
		t.Errorf("measure text output: %v\n%s", err, text)
	}

	// The same inputs give the same reference values (the UKI's time stamp
	// is the source date epoch; the LUKS UUID, in the initramfs, is given).
	out2 := filepath.Join(fx.dir, "out2")
	if _, stderr, err := runStreams(t, fx.uefiArgs(out2, diskKey, sbKey, sbCert, "--vcpus", "1,2", "--source-date-epoch", "1700000000", "--uuid", uuid)...); err != nil {
		t.Fatalf("second build: %v\n%s", err, stderr)
	}
	if b, _ := os.ReadFile(filepath.Join(out2, "reference-values.json")); !bytes.Equal(b, read("reference-values.json")) {
		t.Error("a second build of the same inputs predicts other values")
	}
}

// TestBuildUEFIRefuses: the boot flags' errors, each clear, and nothing
// left behind.
func TestBuildUEFIRefuses(t *testing.T) {
	fx := newBuildFixture(t)
	sbKey, sbCert := newSigningPair(t, fx.dir, "builder")
	_, otherCert := newSigningPair(t, fx.dir, "other")
	tests := map[string]struct {
		args    []string // after the fixture's, which end with --boot direct
		wantErr error
		wantOut string
	}{
		"uefi without a key":  {args: []string{"--boot", "uefi"}, wantErr: ErrUsage, wantOut: "TEST-ONLY snakeoil pair: openssl rsa -passin pass:snakeoil"},
		"uefi without a cert": {args: []string{"--boot", "uefi", "--secure-boot-key", sbKey}, wantErr: ErrUsage, wantOut: "--secure-boot-cert CERT.pem"},
		"encrypted key": {args: []string{"--boot", "uefi", "--secure-boot-key", uki.SnakeoilKey, "--secure-boot-cert", uki.SnakeoilCert},
			wantErr: uki.ErrEncryptedKey, wantOut: "openssl rsa -passin pass:snakeoil"},
		"cert of another key":   {args: []string{"--boot", "uefi", "--secure-boot-key", sbKey, "--secure-boot-cert", otherCert}, wantErr: uki.ErrInput, wantOut: "is not the key"},
		"unknown boot":          {args: []string{"--boot", "bios"}, wantErr: ErrUsage, wantOut: "want uefi or direct"},
		"direct with a key":     {args: []string{"--secure-boot-key", sbKey}, wantErr: ErrUsage, wantOut: "--secure-boot-key is for --boot uefi"},
		"direct with ovmf-vars": {args: []string{"--ovmf-vars", build.DefaultOVMFVars}, wantErr: ErrUsage, wantOut: "--ovmf-vars is for --boot uefi"},
		"uefi with firmware": {args: []string{"--boot", "uefi", "--secure-boot-key", sbKey, "--secure-boot-cert", sbCert, "--firmware", measure.DefaultSimFirmware},
			wantErr: ErrUsage, wantOut: "--ovmf-code"},
		"ovmf-code for snp": {args: []string{"--boot", "uefi", "--secure-boot-key", sbKey, "--secure-boot-cert", sbCert, "--tee", "auto", "--ovmf", amdSevSuffix, "--ovmf-code", measure.DefaultSimOVMFCode},
			wantErr: ErrUsage, wantOut: "--ovmf-code is the simulated guest's firmware"},
		"stub not an EFI application": {args: []string{"--boot", "uefi", "--secure-boot-key", sbKey, "--secure-boot-cert", sbCert, "--uki-stub", "/usr/lib/systemd/boot/efi/linuxx64.elf.stub"},
			wantErr: uki.ErrInput, wantOut: "reading the EFI stub"},
		"vars not a variable store": {args: []string{"--boot", "uefi", "--secure-boot-key", sbKey, "--secure-boot-cert", sbCert, "--ovmf-vars", measure.DefaultSimOVMFCode},
			wantErr: build.ErrSpec, wantOut: "UEFI variable store template"},
		"missing os-release": {args: []string{"--boot", "uefi", "--secure-boot-key", sbKey, "--secure-boot-cert", sbCert, "--os-release", filepath.Join(fx.dir, "absent")},
			wantErr: os.ErrNotExist, wantOut: "os-release"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			parent := t.TempDir()
			key := filepath.Join(t.TempDir(), "disk.key")
			stdout, stderr, err := runStreams(t, fx.args(filepath.Join(parent, "out"), key, append([]string{"--generate-key"}, tc.args...)...)...)
			if err == nil {
				t.Fatalf("build succeeded:\n%s", stdout)
			}
			if !errors.Is(err, tc.wantErr) || !strings.Contains(err.Error(), tc.wantOut) {
				t.Errorf("error %v (stderr %s), want %v with %q", err, stderr, tc.wantErr, tc.wantOut)
			}
			if ents, _ := os.ReadDir(parent); len(ents) != 0 {
				t.Errorf("a failed build left %v next to --out", ents)
			}
			if _, err := os.Stat(key); !errors.Is(err, os.ErrNotExist) {
				t.Error("a failed build left its generated key")
			}
		})
	}
}

func TestMeasurePCRsRefuses(t *testing.T) {
	b := newBootFiles(t)
	for name, tc := range map[string]struct {
		args    []string
		wantOut string
	}{
		"uki without vars":      {args: []string{"--uki", b.kernel}, wantOut: "needs both --uki and --uefi-vars"},
		"with vcpus":            {args: []string{"--uki", b.kernel, "--uefi-vars", b.initrd, "--vcpus", "1"}, wantOut: "--vcpus is for a launch measurement"},
		"pcrs without manifest": {args: []string{"--pcrs"}, wantOut: "--pcrs predicts the PCRs of a --manifest"},
		"not a PE":              {args: []string{"--uki", b.kernel, "--uefi-vars", build.DefaultOVMFVars}, wantOut: "predicting PCRs"},
		"not a store":           {args: []string{"--uki", uki.DefaultStub, "--uefi-vars", b.initrd}, wantOut: "predicting PCRs"},
	} {
		stdout, _, err := runStreams(t, append([]string{"measure"}, tc.args...)...)
		if err == nil || !strings.Contains(err.Error(), tc.wantOut) || stdout != "" {
			t.Errorf("%s: %v (stdout %q), want an error with %q", name, err, stdout, tc.wantOut)
		}
	}
}
