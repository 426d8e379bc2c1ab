package main

import (
	"bytes"
	"debug/elf"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

const mkrootfs = "../../scripts/mkrootfs.sh"

// needTools fails the test when a tool the script or its checks need is
// missing: scripts/install-deps.sh installs them all.
func needTools(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found (run scripts/install-deps.sh): %v", tool, err)
		}
	}
}

func runCmd(t *testing.T, name string, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// debugfs runs one read-only debugfs request against img.
func debugfs(t *testing.T, img, request string) string {
	t.Helper()
	cmd := exec.Command("debugfs", "-R", request, img)
	out, err := cmd.Output() // stderr carries only the version banner
	if err != nil {
		t.Fatalf("debugfs -R %q: %v", request, err)
	}
	return string(out)
}

func TestMkrootfsUsage(t *testing.T) {
	tests := map[string]struct {
		args     []string
		wantCode int
		wantOut  string
	}{
		"help":            {args: []string{"--help"}, wantOut: "Usage: scripts/mkrootfs.sh OUT.img [SIZE_MIB]"},
		"short help":      {args: []string{"-h"}, wantOut: "Usage: scripts/mkrootfs.sh OUT.img [SIZE_MIB]"},
		"no arguments":    {wantCode: 2, wantOut: "Usage:"},
		"unknown option":  {args: []string{"--big"}, wantCode: 2, wantOut: "Usage:"},
		"too many":        {args: []string{"a.img", "32", "x"}, wantCode: 2, wantOut: "Usage:"},
		"size not number": {args: []string{"a.img", "lots"}, wantCode: 1, wantOut: "SIZE_MIB must be"},
		"size too small":  {args: []string{"a.img", "8"}, wantCode: 1, wantOut: "SIZE_MIB must be"},
		"no such dir":     {args: []string{"/nonexistent/dir/a.img"}, wantCode: 1, wantOut: ""},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			out, err := runCmd(t, mkrootfs, tc.args...)
			code := 0
			var exit *exec.ExitError
			if errors.As(err, &exit) {
				code = exit.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tc.wantCode || !strings.Contains(out, tc.wantOut) {
				t.Errorf("exit %d, want %d; output:\n%s\nwant it to contain %q", code, tc.wantCode, out, tc.wantOut)
			}
		})
	}
}

// TestMkrootfs builds the demo OS image once, checks what is in it, boots
// it in QEMU on real dm-crypt mappings, and rebuilds it to compare bytes.
func TestMkrootfs(t *testing.T) {
	needTools(t, "mke2fs", "e2fsck", "debugfs", "dumpe2fs", "go")
	dir := t.TempDir()
	img := filepath.Join(dir, "root.img")
	out, err := runCmd(t, mkrootfs, img, "16")
	if err != nil {
		t.Fatalf("mkrootfs.sh: %v\n%s", err, out)
	}
	if !strings.Contains(out, "mkrootfs: wrote "+img) {
		t.Errorf("script did not say what it wrote:\n%s", out)
	}
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) != 1 {
		t.Errorf("output directory holds %v (%v), want only root.img", entries, err)
	}
	if fi, err := os.Stat(img); err != nil || fi.Size() != 16<<20 {
		t.Fatalf("image: %v, %v; want 16 MiB", fi, err)
	}

	t.Run("contents", func(t *testing.T) { checkImage(t, img) })
	t.Run("boots on dm-crypt in QEMU", func(t *testing.T) { bootImage(t, img) })
	t.Run("rebuild gives the same bytes", func(t *testing.T) {
		if testing.Short() {
			t.Skip("a second build; -short")
		}
		first, err := os.ReadFile(img)
		if err != nil {
			t.Fatal(err)
		}
		if out, err := runCmd(t, mkrootfs, img, "16"); err != nil {
			t.Fatalf("second mkrootfs.sh: %v\n%s", err, out)
		}
		second, err := os.ReadFile(img)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(first, second) {
			t.Error("rebuilding the image over the first gave different bytes")
		}
	})
}

// checkImage looks into the image with e2fsprogs' own tools.
func checkImage(t *testing.T, img string) {

	fsck, err := runCmd(t, "e2fsck", "-fn", img)
	if err != nil {
		t.Errorf("e2fsck -fn: %v\n%s", err, fsck)
	}

	dump, err := exec.Command("dumpe2fs", "-h", img).Output()
	if err != nil {
		t.Fatalf("dumpe2fs -h: %v", err)
	}
	for _, re := range []string{
		`(?m)^Block size:\s+4096$`,
		`(?m)^Filesystem volume name:\s+confidant-root$`,
		`(?m)^Filesystem UUID:\s+6c0f1da4-7e00-4d00-8000-000000000001$`,
		`(?m)^Filesystem features:.*\bextent\b`,
	} {
		if !regexp.MustCompile(re).Match(dump) {
			t.Errorf("dumpe2fs -h does not match %s:\n%s", re, dump)
		}
	}

	sbin := debugfs(t, img, "ls -l /sbin")
	if !regexp.MustCompile(`(?m)^\s*\d+\s+100755\s+\(1\)\s+0\s+0\s+\d+.*\binit\s*$`).MatchString(sbin) {
		t.Errorf("/sbin/init is not a root-owned 0755 file:\n%s", sbin)
	}
	if !regexp.MustCompile(`(?m)\s120777\s.*\bpoweroff\s*$`).MatchString(sbin) {
		t.Errorf("/sbin/poweroff link missing:\n%s", sbin)
	}
	if st := debugfs(t, img, "stat /bin/sh"); !strings.Contains(st, `Fast link dest: "busybox"`) {
		t.Errorf("/bin/sh is not a link to busybox:\n%s", st)
	}
	for _, d := range []string{"/mnt/resource", "/tmp", "/proc", "/sys", "/dev", "/run"} {
		// ls -p prints /INODE/MODE/UID/GID/NAME/SIZE/ per entry.
		var names []string
		isDir := false
		for _, line := range strings.Split(debugfs(t, img, "ls -p "+d), "\n") {
			f := strings.Split(line, "/")
			if len(f) < 7 {
				continue
			}
			if f[5] == "." {
				mode, err := strconv.ParseUint(f[2], 8, 32)
				isDir = err == nil && mode&0o170000 == 0o040000
			} else if f[5] != ".." {
				names = append(names, f[5])
			}
		}
		if !isDir || len(names) != 0 {
			t.Errorf("%s: directory %v, entries %q; want an empty directory", d, isDir, names)
		}
	}

	read := func(path string) []byte {
		dst := filepath.Join(t.TempDir(), filepath.Base(path))
		debugfs(t, img, "dump "+path+" "+dst)
		b, err := os.ReadFile(dst)
		if err != nil || len(b) == 0 {
			t.Fatalf("reading %s from the image: %v (%d bytes)", path, err, len(b))
		}
		return b
	}
	init := string(read("/sbin/init"))
	for _, want := range []string{"#!/bin/sh", "/usr/bin/confidant-guestcheck", "confidant-demo: OS init reached, powering off", "poweroff -f"} {
		if !strings.Contains(init, want) {
			t.Errorf("/sbin/init lacks %q", want)
		}
	}
	if osr := string(read("/etc/os-release")); !strings.Contains(osr, `NAME="Confidant demo OS"`) {
		t.Errorf("/etc/os-release: %q", osr)
	}
	if h := strings.TrimSpace(string(read("/etc/hostname"))); h == "" {
		t.Error("/etc/hostname empty")
	}
	for _, bin := range []string{"/usr/bin/confidant-guestcheck", "/bin/busybox"} {
		data := read(bin)
		f, err := elf.NewFile(bytes.NewReader(data))
		if err != nil {
			t.Fatalf("%s is not ELF: %v", bin, err)
		}
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				t.Errorf("%s has an ELF interpreter: it is not static", bin)
			}
		}
		if bin == "/usr/bin/confidant-guestcheck" {
			// The binary from the image runs here and speaks the line format.
			exe := filepath.Join(t.TempDir(), "guestcheck")
			if err := os.WriteFile(exe, data, 0o755); err != nil {
				t.Fatal(err)
			}
			got, _ := exec.Command(exe, "-temp", "/nonexistent", "-token", "/nonexistent").Output()
			if !regexp.MustCompile(`(?m)^guestcheck: \{"check":"summary","ok":(true|false),"problems":\[`).Match(got) {
				t.Errorf("guestcheck from the image printed:\n%s", got)
			}
		}
	}

}
