package build

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"

	"github.com/confidant-cvm/confidant/images/internal/encrypt"
	"github.com/confidant-cvm/confidant/images/internal/measure"
	"github.com/confidant-cvm/confidant/shared/initramfs"
)

// The steps of Build, in order (key.go holds the disk key step).

// initramfs writes the agent configuration and the initramfs.
func (b *builder) initramfs() error {
	spec := b.spec
	b.step("writing the agent configuration and the initramfs")
	agentYAML, err := spec.AgentConfig.YAML(b.uuid)
	if err != nil {
		return err
	}
	if err := os.WriteFile(b.at(AgentConfigFile), agentYAML, 0o644); err != nil {
		return fmt.Errorf("writing agent configuration: %w", err)
	}
	extra := spec.Extra
	if spec.Busybox != "" {
		if err := checkStatic(spec.Busybox); err != nil {
			return err
		}
		extra = append(slices.Clip(extra), initramfs.Extra{Src: spec.Busybox, Dst: BusyboxPath})
	}
	ird, err := initramfs.Assemble(initramfs.Spec{
		Agent: spec.Agent, Config: b.at(AgentConfigFile), CA: spec.CA,
		ModulesDir: spec.ModulesDir, Modules: spec.modules(), Extra: extra, Mtime: spec.Mtime,
	})
	if err != nil {
		return fmt.Errorf("assembling initramfs: %w", err)
	}
	return writeFile(b.at(InitrdFile), ird.Archive.WriteGzip)
}

// kernel copies the kernel.
func (b *builder) kernel() error {
	b.step("copying the kernel")
	return copyFile(b.at(KernelFile), b.spec.Kernel, measure.MaxKernel)
}

// rootFS settles the ext4 image to encrypt, making it from a directory.
func (b *builder) rootFS() error {
	spec := b.spec
	b.rootImg = spec.RootFS
	if st, err := os.Stat(spec.RootFS); err != nil {
		return fmt.Errorf("inspecting root filesystem: %w", err)
	} else if !st.IsDir() && spec.RootFSSize != 0 {
		return fmt.Errorf("%w: a root filesystem size is for a directory; %s is an image", ErrSpec, spec.RootFS)
	} else if st.IsDir() {
		b.step("making the ext4 root filesystem")
		b.rootImg = b.at(".rootfs.img")
		if err := makeExt4(b.ctx, spec.RootFS, b.rootImg, spec.RootFSSize, spec.Mtime); err != nil {
			return err
		}
	}
	return nil
}

// describe starts the manifest, makes the UEFI boot artifacts, and writes
// the reference values and the release policy: before the key, so that a
// key made on the verifier does not wait on anything that can fail.
func (b *builder) describe() (err error) {
	spec := b.spec
	b.m = &Manifest{
		Format: ManifestFormat, Name: spec.Name, Version: spec.Version, Tool: "confidant-image " + spec.ToolVersion,
		Kernel: KernelFile, Initrd: InitrdFile, Cmdline: spec.Cmdline, OSDisk: OSDiskFile,
		AgentConfig: AgentConfigFile, ReferenceValues: ReferenceValuesFile, ReleasePolicy: ReleasePolicyFile,
		TEE: spec.AgentConfig.tee(), KeyName: b.keyName, KeyOrigin: spec.origin(),
		VerifierURL: spec.AgentConfig.VerifierURL, SourceDateEpoch: spec.Mtime, Boot: BootDirect,
	}
	if spec.boot() == BootUEFI {
		if err := spec.makeUEFI(b.ctx, b.stage, b.kind, b.m, b.step); err != nil {
			return err
		}
	}
	b.step("computing the launch measurements")
	if b.m.Measurements, err = spec.measurements(b.kind, b.stage); err != nil {
		return err
	}
	refs, err := referenceValues(b.m)
	if err != nil {
		return err
	}
	if err := os.WriteFile(b.at(ReferenceValuesFile), refs, 0o644); err != nil {
		return fmt.Errorf("writing reference values: %w", err)
	}
	b.policy = spec.ReleasePolicy
	if b.policy == nil {
		if b.policy, err = ReleasePolicy(b.m, b.keyName); err != nil {
			return err
		}
	}
	if err := os.WriteFile(b.at(ReleasePolicyFile), b.policy, 0o644); err != nil {
		return fmt.Errorf("writing release policy: %w", err)
	}
	b.m.ReleasePolicySHA256 = sha256Hex(b.policy)
	return nil
}

// encrypt encrypts the root filesystem into the OS disk and zeroes the key.
func (b *builder) encrypt() error {
	spec := b.spec
	b.step("encrypting the OS disk")
	res, err := encrypt.Encrypt(b.ctx, encrypt.Spec{
		Input: b.rootImg, Output: b.at(OSDiskFile), DiskKey: b.diskKey,
		RecoveryPassphrase: spec.RecoveryPassphrase, RecoveryKDF: spec.RecoveryKDF,
		UUID: b.uuid, Label: spec.Label, Progress: spec.Progress, Rand: spec.Rand,
	}, b.log)
	if err != nil {
		return err
	}
	clear(res.DiskKey)
	clear(b.diskKey)
	b.m.LUKSUUID = res.UUID
	if b.rootImg != spec.RootFS {
		if err := os.Remove(b.rootImg); err != nil {
			return fmt.Errorf("removing the plain root filesystem: %w", err)
		}
	}
	return nil
}

// writeManifest records the digest of every file and writes the manifest.
func (b *builder) writeManifest() (err error) {
	b.step("writing the manifest")
	m := b.m
	m.Files = map[string]FileDigest{}
	for _, name := range m.fileNames() {
		d, err := digestFile(b.at(name))
		if err != nil {
			return err
		}
		m.Files[name] = d
	}
	if m.Agent, err = digestFile(b.spec.Agent); err != nil {
		return err
	}
	mb, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding manifest: %w", err)
	}
	if err := os.WriteFile(b.at(ManifestFile), append(mb, '\n'), 0o644); err != nil {
		return fmt.Errorf("writing manifest: %w", err)
	}
	return nil
}
