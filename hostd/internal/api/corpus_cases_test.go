package api

import (
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/confidant-cvm/confidant/shared/tee/snp/sim"
)

const (
	specGroup = "hostd spec abuse"
	apiGroup  = "hostd API abuse"
)

// hostdCases is the hostd corpus, group by group.
func hostdCases() []hostdCase {
	var all []hostdCase
	for _, g := range [][]hostdCase{pathCases(), swapCases(), nameCases(), sizeCases(), fieldCases(), encodingCases(), apiCases()} {
		all = append(all, g...)
	}
	return all
}

// specCase posts the good spec after edit changed it; it must be refused
// as an invalid spec with reason.
func specCase(name string, edit func(c *hostdCorpus, s map[string]any), reason string) hostdCase {
	return hostdCase{group: specGroup, name: name,
		send: func(t *testing.T, c *hostdCorpus) hostdResponse {
			s := c.spec("victim")
			edit(c, s)
			return c.create(t, s)
		},
		status: http.StatusBadRequest, code: "invalid_spec", reason: reason}
}

// several marks a case whose spec has several problems.
func several(tc hostdCase) hostdCase {
	tc.several = true
	return tc
}

// rawCase sends exactly body to path.
func rawCase(group, name, method, path, contentType, body string, status int, code, reason string) hostdCase {
	return hostdCase{group: group, name: name,
		send: func(t *testing.T, c *hostdCorpus) hostdResponse {
			return c.raw(t, method, path, contentType, strings.NewReader(body))
		},
		status: status, code: code, reason: reason}
}

// set returns an edit that sets s[key] (key "a.b" reaches into the
// object a).
func set(key string, v any) func(*hostdCorpus, map[string]any) {
	return func(_ *hostdCorpus, s map[string]any) { setKey(s, key, v) }
}

func setKey(s map[string]any, key string, v any) {
	if outer, inner, ok := strings.Cut(key, "."); ok {
		m, _ := s[outer].(map[string]any)
		if m == nil {
			m = map[string]any{}
			s[outer] = m
		}
		m[inner] = v
		return
	}
	s[key] = v
}

// setPath sets a path field to a file named relative to the corpus's
// directories: "state:" for the state directory, "out:" for the outside
// one; anything else is used as it is.
func setPath(key, path string) func(*hostdCorpus, map[string]any) {
	return func(c *hostdCorpus, s map[string]any) {
		switch {
		case strings.HasPrefix(path, "state:"):
			path = filepath.Join(c.stateDir, strings.TrimPrefix(path, "state:"))
		case strings.HasPrefix(path, "out:"):
			path = c.out + "/" + strings.TrimPrefix(path, "out:")
		}
		setKey(s, key, path)
	}
}

const stateRefused = "resolves into hostd's state directory"

func pathCases() []hostdCase {
	ark := "state:sim-sp/" + sim.ARKKeyFile
	return []hostdCase{
		specCase("kernel is the sim ARK key", setPath("image.kernel", ark), stateRefused),
		specCase("initrd is the sim VCEK key", setPath("image.initrd", "state:sim-sp/"+sim.VCEKKeyFile), stateRefused),
		specCase("firmware is the sim ASK key", setPath("firmware.path", "state:sim-sp/"+sim.ASKKeyFile), stateRefused),
		specCase("os disk is a guest's swtpm key", setPath("image.os_disk", "state:keys/base.swtpm-key"), stateRefused),
		specCase("os disk is another guest's spec", setPath("image.os_disk", "state:guests/base/spec.json"), stateRefused),
		specCase("kernel is the swtpm CA config", setPath("image.kernel", "state:swtpm-ca/swtpm_setup.conf"), stateRefused),
		specCase("kernel is the state directory", setPath("image.kernel", "state:"), stateRefused),
		specCase("kernel via a symlink to the ARK key", setPath("image.kernel", "out:ark-link"), stateRefused+"|it resolves to"),
		specCase("kernel via a chain of symlinks", setPath("image.kernel", "out:chain"), "it resolves to"),
		specCase("kernel via a relative symlink", setPath("image.kernel", "out:rel-link"), "it resolves to"),
		specCase("kernel via a symlink to the state dir", setPath("image.kernel", "out:state-link/sim-sp/"+sim.ARKKeyFile), "it resolves to"),
		specCase("firmware is a symlink to the state dir", setPath("firmware.path", "out:state-link"), "it resolves to"),
		specCase("os disk via a dangling symlink into state", setPath("image.os_disk", "out:dangling"), "it resolves to"),
		specCase("kernel via dot-dot", setPath("image.kernel", "out:../state/sim-sp/"+sim.ARKKeyFile), "is not clean"),
		specCase("kernel not yet created in state", setPath("image.kernel", "state:guests/victim/kernel"), stateRefused),
		specCase("manifest in the state dir", setPath("image.manifest", "state:guests/base/spec.json"), "image.manifest: path resolves into"),
		specCase("manifest names a key in state", func(c *hostdCorpus, s map[string]any) {
			img := s["image"].(map[string]any)
			delete(img, "kernel")
			img["manifest"] = c.out + "/into-state.json"
		}, "image.kernel: path resolves into"),
		specCase("manifest is a FIFO", setPath("image.manifest", "out:fifo"), "image manifest|not a regular file"),
		specCase("qgs socket in the state dir", func(c *hostdCorpus, s map[string]any) {
			s["tee"] = "tdx"
			s["firmware"] = map[string]any{"kind": "ovmf", "path": c.out + "/os.img"}
			s["tdx"] = map[string]any{"qgs_socket": filepath.Join(c.stateDir, "guests", "base", "sp.sock")}
		}, "tdx.qgs_socket: path resolves into"),
		specCase("relative kernel", setPath("image.kernel", "vmlinuz"), "is not absolute"),
		specCase("relative initrd with dot", setPath("image.initrd", "./initrd.img"), "is not absolute"),
		specCase("kernel is /dev/sda", setPath("image.kernel", "/dev/sda"), "no such file|not a regular file"),
		specCase("kernel is /dev/mem", setPath("image.kernel", "/dev/mem"), "no such file|not a regular file"),
		specCase("kernel is /dev/zero", setPath("image.kernel", "/dev/zero"), "not a regular file"),
		specCase("initrd is /dev/urandom", setPath("image.initrd", "/dev/urandom"), "not a regular file"),
		specCase("firmware is /dev/null", setPath("firmware.path", "/dev/null"), "not a regular file"),
		specCase("os disk is a char device", setPath("image.os_disk", "/dev/null"), "not a regular file or block device"),
		specCase("kernel is a directory", setPath("image.kernel", "out:dir"), "not a regular file"),
		specCase("os disk is a directory", setPath("image.os_disk", "out:dir"), "not a regular file or block device"),
		specCase("kernel is a FIFO", setPath("image.kernel", "out:fifo"), "not a regular file"),
		specCase("os disk is a FIFO", setPath("image.os_disk", "out:fifo"), "not a regular file or block device"),
		specCase("kernel does not exist", setPath("image.kernel", "out:nope"), "no such file"),
		specCase("kernel is a symlink loop", setPath("image.kernel", "out:loop-a"), "too many links"),
		specCase("firmware path with a QEMU option", setPath("firmware.path", "out:fw,if=pflash"), "characters hostd refuses"),
		specCase("os disk path with a newline", setPath("image.os_disk", "out:os.img\nx"), "characters hostd refuses"),
		specCase("kernel path with ESC", setPath("image.kernel", "out:\x1b]0;pwned\x07"), "characters hostd refuses"),
		specCase("kernel path 5000 bytes", setPath("image.kernel", "/"+strings.Repeat("a/", 2500)), "not clean|characters hostd refuses"),
	}
}

func nameCases() []hostdCase {
	const reason = "want 1 to 32 of [a-z0-9-]"
	return []hostdCase{
		specCase("name with a slash", set("name", "a/b"), reason),
		specCase("name dot-dot", set("name", ".."), reason),
		specCase("name climbing out", set("name", "../../etc"), reason),
		specCase("name NUL", set("name", "a\x00b"), reason),
		specCase("name ESC sequence", set("name", "\x1b[31mred\x1b[0m"), reason),
		specCase("name newline forging a log line", set("name", "a\ntime=0 level=INFO msg=\"created guest\" guest=root"), reason),
		specCase("name carriage return", set("name", "abc\rdef"), reason),
		specCase("name bidi override", set("name", "abc\u202egpj"), reason),
		specCase("name C1 control", set("name", "a\u009bb"), reason),
		specCase("name 300 bytes", set("name", strings.Repeat("a", 300)), reason),
		specCase("name 33 bytes", set("name", strings.Repeat("a", 33)), reason),
		specCase("name empty", set("name", ""), reason),
		specCase("name uppercase", set("name", "Demo"), reason),
		specCase("name leading dash", set("name", "-demo"), reason),
		specCase("name trailing dash", set("name", "demo-"), reason),
		specCase("name with a space", set("name", "de mo"), reason),
		specCase("name unicode look-alike", set("name", "dеmo"), reason), // Cyrillic е
		specCase("name not a string", set("name", 7), "cannot unmarshal number"),
	}
}

func sizeCases() []hostdCase {
	return []hostdCase{
		specCase("vcpus 0", set("vcpus", 0), "vcpus 0: want 1 to 64"),
		specCase("vcpus -1", set("vcpus", -1), "vcpus -1: want 1 to 64"),
		specCase("vcpus 100000", set("vcpus", 100000), "vcpus 100000: want 1 to 64"),
		specCase("vcpus 65", set("vcpus", 65), "vcpus 65: want 1 to 64"),
		specCase("vcpus fractional", set("vcpus", 1.5), "cannot unmarshal number 1.5"),
		specCase("vcpus beyond int64", set("vcpus", "x"), "cannot unmarshal string"),
		specCase("memory 0", set("memory", "0"), "memory 0: want whole MiB"),
		specCase("memory 1e99G", set("memory", "1e99G"), `size "1e99G"`),
		specCase("memory -1M", set("memory", "-1M"), `size "-1M"`),
		specCase("memory 12XB", set("memory", "12XB"), `size "12XB"`),
		specCase("memory overflowing int64", set("memory", "9223372036854775807T"), "too large|want a whole number"),
		specCase("memory 2TiB", set("memory", "2TiB"), "want whole MiB from 128MiB to 1TiB"),
		specCase("memory 127MiB", set("memory", "127MiB"), "want whole MiB from 128MiB to 1TiB"),
		specCase("memory not whole MiB", set("memory", "134217729"), "want whole MiB from 128MiB to 1TiB"),
		specCase("memory as a number", set("memory", 268435456), "size must be a string"),
		specCase("memory with a sign", set("memory", "+256MiB"), `size "+256MiB"`),
		specCase("temp disk 17TiB", set("temp_disk_size", "17TiB"), "temp_disk_size 17TiB: want whole MiB up to 16TiB"),
		specCase("temp disk 1000000TiB", set("temp_disk_size", "1000000TiB"), "temp_disk_size 1000000TiB: want whole MiB up to 16TiB"),
		specCase("temp disk not whole MiB", set("temp_disk_size", "1025KiB"), "temp_disk_size 1025KiB"),
	}
}

func fieldCases() []hostdCase {
	return []hostdCase{
		several(specCase("tee unknown", set("tee", "sev-es"), `tee "sev-es": want sev-snp, tdx or sim`)),
		several(specCase("tee uppercase", set("tee", "SIM"), `tee "SIM"`)),
		several(specCase("tee missing", func(_ *hostdCorpus, s map[string]any) { delete(s, "tee") }, `tee "": want`)),
		specCase("host_data of another guest", func(c *hostdCorpus, s map[string]any) {
			b, _ := hex.DecodeString(c.base.Identity.HostData)
			setKey(s, "snp.host_data", base64.StdEncoding.EncodeToString(b))
		}, `guest "base" has the same HOST_DATA`),
		specCase("explicit host_data of another guest", func(c *hostdCorpus, s map[string]any) { setKey(s, "snp.host_data", c.baseHD) }, `guest "base-explicit" has the same HOST_DATA`),
		specCase("host_data 16 bytes", set("snp.host_data", base64.StdEncoding.EncodeToString(make([]byte, 16))), "snp.host_data: want 32 bytes"),
		specCase("host_data 33 bytes", set("snp.host_data", base64.StdEncoding.EncodeToString(make([]byte, 33))), "snp.host_data: want 32 bytes"),
		specCase("host_data url-safe base64", set("snp.host_data", strings.Repeat("-_", 21)+"AA="), "snp.host_data: want 32 bytes"),
		specCase("host_data hex", set("snp.host_data", strings.Repeat("ab", 32)), "snp.host_data: want 32 bytes"),
		specCase("snp policy debug", set("snp.policy", 0xb0000), "debug (bit 19)"),
		specCase("snp policy migration agent", set("snp.policy", 0x70000), "migration agent (bit 18)"),
		specCase("snp policy without bit 16", set("snp.policy", 0x20000), "bit 16 must be set"),
		specCase("snp policy high bits", set("snp.policy", uint64(1)<<40|0x30000), "reserved bits above 31"),
		specCase("verifier with a newline", set("verifier", "127.0.0.1:8443\nX-Evil: 1"), "verifier: address"),
		specCase("verifier without port, newline", set("verifier", "evil\nhost"), "verifier: address"),
		specCase("verifier with a guestfwd option", set("verifier", "10.0.2.2:80,cmd:/bin/sh"), "verifier: address"),
		specCase("verifier port 0", set("verifier", "127.0.0.1:0"), "bad port"),
		specCase("verifier port 99999", set("verifier", "127.0.0.1:99999"), "bad port"),
		specCase("verifier IPv6", set("verifier", "[::1]:8443"), "IPv6 literals"),
		specCase("verifier missing", func(_ *hostdCorpus, s map[string]any) { delete(s, "verifier") }, "missing port"),
		specCase("cmdline with ESC", set("image.cmdline", "console=ttyS0 \x1b[2J"), "image.cmdline: want at most 4096 printable"),
		specCase("cmdline with a newline", set("image.cmdline", "console=ttyS0\ninit=/bin/sh"), "image.cmdline: want at most 4096 printable"),
		specCase("cmdline with NUL", set("image.cmdline", "quiet\x00init=/bin/sh"), "image.cmdline: want at most 4096 printable"),
		specCase("cmdline 5000 bytes", set("image.cmdline", strings.Repeat("a", 5000)), "image.cmdline: want at most 4096 printable"),
		specCase("cpu with a QEMU option", set("cpu", "max,+sev-es"), `cpu "max,+sev-es"`),
		several(specCase("firmware kind unknown", set("firmware.kind", "uefi"), `firmware.kind "uefi": want seabios`)),
		specCase("sim ovmf guest with a direct-boot image", set("firmware.kind", "ovmf"), "this image was built for direct boot"),
		specCase("sim guest with svsm vtpm", set("vtpm", "svsm"), `vtpm "svsm": sim guests use swtpm or none`),
		specCase("tpm device unknown", set("tpm_device", "tpm-spapr"), `tpm_device "tpm-spapr"`),
		specCase("sim guest with a tdx section", set("tdx.qgs_socket", "/run/qgs.sock"), "tdx: only for tdx guests"),
		specCase("sev-snp with a host swtpm", func(c *hostdCorpus, s map[string]any) {
			s["tee"], s["vtpm"] = "sev-snp", "swtpm"
			s["firmware"] = map[string]any{"kind": "ovmf", "path": c.out + "/os.img"}
		}, "host-visible swtpm"),
		specCase("sev-snp with seabios", func(_ *hostdCorpus, s map[string]any) {
			s["tee"] = "sev-snp"
			s["firmware"] = map[string]any{"kind": "seabios"}
		}, "sev-snp guests need OVMF"),
		several(specCase("every problem at once", func(_ *hostdCorpus, s map[string]any) {
			s["name"], s["vcpus"], s["memory"], s["verifier"] = "A/..", 0, "0", "x"
		}, "vcpus 0")),
	}
}
