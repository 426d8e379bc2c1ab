// Package uki makes the signed boot image of a Confidant guest: a Unified
// Kernel Image (systemd's EFI stub with the kernel, the initramfs, the
// kernel command line and an os-release added as PE sections), signed for
// UEFI Secure Boot, and the FAT EFI system partition it boots from.
//
// The work is done by the standard tools, as Debian ships them: objcopy
// (binutils) lays out the UKI, sbsign (sbsigntool) signs it with
// Authenticode, mkfs.vfat (dosfstools) and mtools make the ESP without a
// loop device; sbverify checks a signature. A tool's failure is an error
// that names the tool and quotes its (escaped) standard error.
//
// Every output is written under a temporary name beside it and renamed into
// place, so a failure leaves nothing under the output's name.
package uki

import (
	"bytes"
	"context"
	"debug/pe"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/confidant-cvm/confidant/shared/termsafe"
)

// DefaultStub is Debian's systemd EFI stub (systemd-boot-efi).
const DefaultStub = "/usr/lib/systemd/boot/efi/linuxx64.efi.stub"

// SectionAlignment is where each added section starts: the next multiple
// of 64 KiB after the previous one (as systemd's ukify lays them out).
const SectionAlignment = 64 << 10

// Outcomes callers branch on.
var (
	// ErrTool means an external tool failed (ToolError says which).
	ErrTool = errors.New("external tool failed")
	// ErrInput means an input is not what it must be: a stub that is not
	// an x86-64 EFI application, a key that is encrypted, a certificate
	// that does not match the key.
	ErrInput = errors.New("invalid boot image input")
)

// ToolError is the failure of one external tool run.
type ToolError struct {
	// Tool is the program's name, e.g. "objcopy".
	Tool string
	// Err is how it ended (an *exec.ExitError, or why it did not start).
	Err error
	// Stderr is what it wrote on its standard error, trimmed.
	Stderr string
}

func (e *ToolError) Error() string {
	msg := fmt.Sprintf("%s: %v", e.Tool, e.Err)
	if e.Stderr != "" {
		msg += ": " + termsafe.Escape(termsafe.Clip(e.Stderr, 2000))
	}
	return msg
}

func (e *ToolError) Unwrap() []error { return []error{ErrTool, e.Err} }

// run runs a tool and returns its standard output; a failure is a
// *ToolError. env is added to the process environment.
func run(ctx context.Context, env []string, tool string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, tool, args...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("running %s: %w", tool, ctx.Err())
		}
		return nil, &ToolError{Tool: tool, Err: err, Stderr: strings.TrimSpace(stderr.String())}
	}
	return stdout.Bytes(), nil
}

// Inputs are the parts of a UKI.
type Inputs struct {
	// Stub is systemd's EFI stub (linuxx64.efi.stub); "": DefaultStub.
	Stub string
	// Kernel is the kernel (bzImage with its EFI stub) and Initrd the
	// initramfs: files, both required.
	Kernel, Initrd string
	// Cmdline is the kernel command line (no section when empty);
	// OSRelease the os-release text (required).
	Cmdline, OSRelease []byte
	// Epoch is the PE header's time stamp (SOURCE_DATE_EPOCH, seconds,
	// taken modulo 2^32): the same inputs make the same UKI.
	Epoch int64
}

// Section is one section added to the stub.
type Section struct {
	// Name is the PE section name, e.g. ".linux".
	Name string
	// VMA is the section's virtual address (image base + RVA).
	VMA uint64
	// Size is its content's length in bytes.
	Size int64
	// File holds its content.
	File string
}

// Layout places the sections .osrel, .cmdline (when given), .linux and
// .initrd after the stub's own sections: each at the next multiple of
// SectionAlignment after the end of the previous one. For Debian's systemd
// 252 stub, whose sections end at 0x19134, and small os-release and command
// line, that is .osrel 0x20000, .cmdline 0x30000, .linux 0x40000.
func Layout(stub []byte, secs []Section) ([]Section, error) {
	f, err := pe.NewFile(bytes.NewReader(stub))
	if err != nil {
		return nil, fmt.Errorf("%w: reading the EFI stub: %v", ErrInput, err)
	}
	defer f.Close()
	oh, ok := f.OptionalHeader.(*pe.OptionalHeader64)
	if !ok || f.Machine != pe.IMAGE_FILE_MACHINE_AMD64 {
		return nil, fmt.Errorf("%w: the EFI stub is not a PE32+ x86-64 image", ErrInput)
	}
	if oh.Subsystem != pe.IMAGE_SUBSYSTEM_EFI_APPLICATION {
		return nil, fmt.Errorf("%w: the EFI stub is not an EFI application (subsystem %d)", ErrInput, oh.Subsystem)
	}
	var end uint64
	for _, s := range f.Sections {
		for _, added := range secs {
			if s.Name == added.Name {
				return nil, fmt.Errorf("%w: the EFI stub already has a %s section (is it a UKI already?)", ErrInput, s.Name)
			}
		}
		vs := s.VirtualSize
		if vs == 0 {
			vs = s.Size
		}
		end = max(end, uint64(s.VirtualAddress)+uint64(vs))
	}
	if end == 0 {
		return nil, fmt.Errorf("%w: the EFI stub has no sections", ErrInput)
	}
	out := make([]Section, len(secs))
	next := end
	for i, s := range secs {
		rva := alignUp(next, SectionAlignment)
		s.VMA = oh.ImageBase + rva
		out[i] = s
		next = rva + uint64(max(s.Size, 1))
	}
	if next > 1<<31 {
		return nil, fmt.Errorf("%w: the UKI would span %d bytes", ErrInput, next)
	}
	return out, nil
}

func alignUp(v, a uint64) uint64 { return (v + a - 1) / a * a }

// Build writes the unsigned UKI made of in to out (replacing it):
//
//	objcopy --add-section .osrel=F --change-section-vma .osrel=VMA
//	        [--add-section .cmdline=F --change-section-vma .cmdline=VMA]
//	        --add-section .linux=KERNEL --change-section-vma .linux=VMA
//	        --add-section .initrd=INITRD --change-section-vma .initrd=VMA
//	        STUB OUT
//
// with the VMAs of Layout, then sets the PE time stamp to in.Epoch
// (objcopy writes the current time) and recomputes the PE checksum.
func Build(ctx context.Context, in Inputs, out string) error {
	if in.Stub == "" {
		in.Stub = DefaultStub
	}
	var errs []error
	if len(in.OSRelease) == 0 {
		errs = append(errs, fmt.Errorf("%w: the os-release is empty", ErrInput))
	}
	size := func(what, path string) int64 {
		st, err := os.Stat(path)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("reading the %s: %w", what, err))
		case !st.Mode().IsRegular() || st.Size() == 0:
			errs = append(errs, fmt.Errorf("%w: the %s %s is not a non-empty regular file", ErrInput, what, path))
		default:
			return st.Size()
		}
		return 0
	}
	kernelSize, initrdSize := size("kernel", in.Kernel), size("initrd", in.Initrd)
	stub, err := os.ReadFile(in.Stub)
	if err != nil {
		errs = append(errs, fmt.Errorf("reading the EFI stub: %w", err))
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}

	tmpDir, err := os.MkdirTemp(filepath.Dir(out), "."+filepath.Base(out)+".parts-*")
	if err != nil {
		return fmt.Errorf("making the UKI: %w", err)
	}
	defer os.RemoveAll(tmpDir)
	part := func(name string, b []byte) (string, error) {
		p := filepath.Join(tmpDir, name)
		return p, os.WriteFile(p, b, 0o600)
	}
	osrel, err := part("osrel", in.OSRelease)
	if err != nil {
		return fmt.Errorf("making the UKI: %w", err)
	}
	secs := []Section{{Name: ".osrel", Size: int64(len(in.OSRelease)), File: osrel}}
	if len(in.Cmdline) > 0 {
		cmdline, err := part("cmdline", in.Cmdline)
		if err != nil {
			return fmt.Errorf("making the UKI: %w", err)
		}
		secs = append(secs, Section{Name: ".cmdline", Size: int64(len(in.Cmdline)), File: cmdline})
	}
	secs = append(secs, Section{Name: ".linux", Size: kernelSize, File: in.Kernel},
		Section{Name: ".initrd", Size: initrdSize, File: in.Initrd})
	if secs, err = Layout(stub, secs); err != nil {
		return err
	}
	tmp := filepath.Join(tmpDir, "uki.efi")
	var args []string
	for _, s := range secs {
		args = append(args, "--add-section", s.Name+"="+s.File,
			"--change-section-vma", fmt.Sprintf("%s=%#x", s.Name, s.VMA))
	}
	if _, err := run(ctx, nil, "objcopy", append(args, in.Stub, tmp)...); err != nil {
		return fmt.Errorf("making the UKI: %w", err)
	}
	if err := stampFile(tmp, uint32(in.Epoch)); err != nil {
		return err
	}
	return place(tmp, out)
}

// place renames a finished file into place.
func place(tmp, out string) error {
	if err := os.Chmod(tmp, 0o644); err != nil {
		return fmt.Errorf("writing %s: %w", filepath.Base(out), err)
	}
	if err := os.Rename(tmp, out); err != nil {
		return fmt.Errorf("renaming %s into place: %w", filepath.Base(out), err)
	}
	return nil
}
