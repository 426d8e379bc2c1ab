package harness

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// ImageSpec is one confidant-image build for the simulated TEE.
type ImageSpec struct {
	// Name and Version of the image.
	Name, Version string
	// RootFS is the demo OS image (scripts/mkrootfs.sh).
	RootFS string
	// Kernel is the guest kernel.
	Kernel string
	// VerifierURL is the verifier as the guest reaches it
	// (https://10.0.2.100:PORT).
	VerifierURL string
	// CA is the verifier's CA certificate (for https).
	CA string
	// KeyName names the disk key at the verifier.
	KeyName string
	// AdminSocket is the verifier's admin socket: the build registers the
	// disk key there, with the release policy it generates for the image.
	AdminSocket string
	// KeyFile, if set, receives a copy of the disk key (a new file, mode
	// 0600): the recovery copy of the key the verifier made. Empty: the
	// key is written nowhere.
	KeyFile string
	// Out is the output directory (it must not exist).
	Out string
	// VCPUs is the guest's vCPU count (the measurement covers it).
	VCPUs int
	// TempDisk is the temp disk's device in the guest ("": none).
	TempDisk string
	// Direct builds for SeaBIOS direct kernel boot (--boot direct, the
	// development mode); false: a signed UKI for UEFI Secure Boot, signed
	// with SecureBoot.
	Direct     bool
	SecureBoot SecureBootKey
}

// Image is a built image: its directory and manifest.
type Image struct {
	Dir string
	// KeyFile is the recovery copy of the disk key ("": none).
	KeyFile  string
	Manifest Manifest
	// Output is what confidant-image printed (stdout and stderr).
	Output string
}

// Manifest holds the manifest.json fields the harness reads.
type Manifest struct {
	Name            string `json:"name"`
	Version         string `json:"version"`
	Kernel          string `json:"kernel"`
	Initrd          string `json:"initrd"`
	Cmdline         string `json:"cmdline"`
	OSDisk          string `json:"os_disk"`
	ReferenceValues string `json:"reference_values"`
	ReleasePolicy   string `json:"release_policy"`
	KeyName         string `json:"key_name"`
	LUKSUUID        string `json:"luks_uuid"`
	VerifierURL     string `json:"verifier_url"`
	// Boot is "uefi" (UKI on an ESP, Secure Boot) or "direct" (SeaBIOS).
	Boot         string `json:"boot"`
	UKI          string `json:"uki"`
	ESP          string `json:"esp"`
	UEFIVars     string `json:"uefi_vars"`
	Measurements []struct {
		Kind        string `json:"kind"`
		Measurement string `json:"measurement"`
		VCPUs       int    `json:"vcpus"`
	} `json:"measurements"`
}

// Path returns the path of a file of the image.
func (im *Image) Path(name string) string { return filepath.Join(im.Dir, name) }

// ManifestPath is the image's manifest.json.
func (im *Image) ManifestPath() string { return im.Path("manifest.json") }

// ReferenceValuesPath is the reference values file the build wrote.
func (im *Image) ReferenceValuesPath() string { return im.Path(im.Manifest.ReferenceValues) }

// ReleasePolicyPath is the release policy the build wrote for the disk key
// (bound to the image's measurements), "" when it wrote none.
func (im *Image) ReleasePolicyPath() string {
	if im.Manifest.ReleasePolicy == "" {
		return ""
	}
	return im.Path(im.Manifest.ReleasePolicy)
}

// Measurement returns the simulated launch measurement for vcpus.
func (im *Image) Measurement(vcpus int) (string, error) {
	for _, m := range im.Manifest.Measurements {
		if m.Kind == "sim-sev-snp" && m.VCPUs == vcpus {
			return m.Measurement, nil
		}
	}
	return "", fmt.Errorf("manifest of %s has no sim-sev-snp measurement for %d vCPUs", im.Dir, vcpus)
}

// BuildImage runs confidant-image build for spec: the verifier makes a new
// disk key (platform-managed) and registers it with the release policy the
// build generates for the image's measurements; the build writes the
// initramfs with the agent, the encrypted OS disk, the reference values,
// that release policy and the manifest.
func BuildImage(ctx context.Context, bins Binaries, spec ImageSpec) (*Image, error) {
	args := []string{"build",
		"--name", spec.Name, "--image-version", spec.Version,
		"--rootfs", spec.RootFS, "--kernel", spec.Kernel, "--agent", bins.Agent,
		"--tee", "sim", "--verifier-url", spec.VerifierURL,
		"--key-name", spec.KeyName, "--admin-socket", spec.AdminSocket, "--key-origin", "platform",
		"--vcpus", fmt.Sprint(spec.VCPUs), "--out", spec.Out,
	}
	if spec.KeyFile != "" {
		args = append(args, "--key-file", spec.KeyFile)
	}
	if spec.CA != "" {
		args = append(args, "--ca", spec.CA)
	}
	if strings.HasPrefix(spec.VerifierURL, "http://") {
		args = append(args, "--allow-plain-http")
	}
	if spec.TempDisk != "" {
		args = append(args, "--temp-disk", spec.TempDisk)
	}
	if spec.Direct {
		args = append(args, "--boot", "direct")
	} else {
		args = append(args, "--boot", "uefi",
			"--secure-boot-key", spec.SecureBoot.Key, "--secure-boot-cert", spec.SecureBoot.Cert)
	}
	cmd := exec.CommandContext(ctx, bins.Image, args...)
	cmd.Env = append(os.Environ(), "SOURCE_DATE_EPOCH=1735689600")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("confidant-image build: %w\n%s", err, out)
	}
	im := &Image{Dir: spec.Out, KeyFile: spec.KeyFile, Output: string(out)}
	b, err := os.ReadFile(im.ManifestPath())
	if err != nil {
		return nil, fmt.Errorf("reading manifest: %w", err)
	}
	if err := json.Unmarshal(b, &im.Manifest); err != nil {
		return nil, fmt.Errorf("decoding manifest: %w", err)
	}
	return im, nil
}

// CopyFile copies src to a new file dst (mode 0600), keeping holes out of
// the question: the OS disk is small.
func CopyFile(dst, src string) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("copying %s: %w", src, err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("copying to %s: %w", dst, err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copying %s to %s: %w", src, dst, err)
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("copying to %s: %w", dst, err)
	}
	return nil
}

// ErrNotTamperable reports an initramfs without the byte the tampering
// changes.
var ErrNotTamperable = errors.New("initramfs has no agent configuration header to change")

// tamperNeedle is the first line of the agent configuration confidant-image
// writes into the initramfs; tampering lower-cases its "W".
const tamperNeedle = "# Written by confidant-image build."

// TamperInitramfs writes to dst a copy of the gzip initramfs src with one
// byte of its content changed: the comment at the top of
// /etc/confidant/agent.yaml ("# Written" becomes "# written"). The guest
// still unpacks and runs the very same agent with the same settings; only
// the launch measurement differs. It returns a description of the change.
func TamperInitramfs(dst, src string) (string, error) {
	f, err := os.Open(src)
	if err != nil {
		return "", fmt.Errorf("tampering with initramfs: %w", err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return "", fmt.Errorf("tampering with initramfs: %w", err)
	}
	cpio, err := io.ReadAll(io.LimitReader(zr, 1<<30))
	if err != nil {
		return "", fmt.Errorf("tampering with initramfs: decompressing: %w", err)
	}
	i := bytes.Index(cpio, []byte(tamperNeedle))
	if i < 0 {
		return "", ErrNotTamperable
	}
	off := i + len("# ")
	cpio[off] = 'w'
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(cpio); err != nil {
		return "", fmt.Errorf("tampering with initramfs: compressing: %w", err)
	}
	if err := zw.Close(); err != nil {
		return "", fmt.Errorf("tampering with initramfs: compressing: %w", err)
	}
	if err := os.WriteFile(dst, buf.Bytes(), 0o644); err != nil {
		return "", fmt.Errorf("tampering with initramfs: %w", err)
	}
	return fmt.Sprintf("changed 1 byte of the initramfs content: /etc/confidant/agent.yaml %q -> %q (archive offset %d)",
		"# Written", "# written", off), nil
}
