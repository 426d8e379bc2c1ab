package qemu

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

func baseConfig(tee string) Config {
	return Config{
		Name:         "demo",
		TEE:          tee,
		VCPUs:        2,
		MemoryMiB:    2048,
		CPU:          "max",
		Firmware:     "/var/lib/confidant-hostd/guests/demo/boot/firmware",
		Kernel:       "/var/lib/confidant-hostd/guests/demo/boot/kernel",
		Initrd:       "/var/lib/confidant-hostd/guests/demo/boot/initrd",
		Append:       "console=ttyS0 confidant.verifier=10.0.2.100:8443",
		OSDisk:       "/srv/images/demo,v1/os.img",
		TempDisk:     "/var/lib/confidant-hostd/guests/demo/temp.img",
		QMPSocket:    "/var/lib/confidant-hostd/guests/demo/qmp.sock",
		SerialLog:    "/var/lib/confidant-hostd/guests/demo/console.log",
		VerifierHost: "127.0.0.1",
		VerifierPort: 8443,
		Relay:        "/opt/confidant,test/confidant-hostd",
	}
}

// testIdentity32 and testIdentity48 are made-up guest identities
// (HOST_DATA, MRCONFIGID) for the golden files.
func testIdentity32() (b [32]byte) {
	for i := range b {
		b[i] = byte(i + 1)
	}
	return b
}

func testIdentity48() (b [48]byte) {
	for i := range b {
		b[i] = byte(0x80 + i)
	}
	return b
}

func TestArgsGolden(t *testing.T) {
	tests := map[string]func() Config{
		"sim": func() Config {
			c := baseConfig(TEESim)
			c.SPSocket = "/var/lib/confidant-hostd/guests/demo/sp.sock"
			c.TPMSocket = "/var/lib/confidant-hostd/guests/demo/tpm/swtpm.sock"
			c.TPMDevice = "tpm-crb"
			return c
		},
		"sim-ovmf": func() Config { return uefiConfig() },
		"sev-snp": func() Config {
			c := baseConfig(TEESNP)
			c.CPU = "EPYC-v4"
			c.SNP = SNPConfig{Policy: 0x30000, CBitPos: 51, ReducedPhysBits: 1}
			c.SNP.HostData = testIdentity32()
			return c
		},
		"sev-snp-igvm": func() Config {
			c := baseConfig(TEESNP)
			c.CPU = "EPYC-v4"
			c.IGVM = true
			c.Firmware = "/usr/share/coconut-svsm/coconut-qemu.igvm"
			c.SNP = SNPConfig{Policy: 0x30000, CBitPos: 51, ReducedPhysBits: 1}
			c.SNP.HostData[0] = 0xaa
			return c
		},
		"tdx": func() Config {
			c := baseConfig(TEETDX)
			c.CPU = "host"
			c.TDX = TDXConfig{QGSSocket: "/var/run/tdx-qgs/qgs.socket", MRConfigID: testIdentity48()}
			return c
		},
	}
	for name, mk := range tests {
		t.Run(name, func(t *testing.T) {
			args, err := Args(mk())
			if err != nil {
				t.Fatalf("Args() error = %v", err)
			}
			got := strings.Join(args, "\n") + "\n"
			path := filepath.Join("testdata", name+".golden")
			if *update {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("reading golden file (run with -update): %v", err)
			}
			if got != string(want) {
				t.Errorf("Args() differs from %s (run with -update to accept):\ngot:\n%s", path, got)
			}
		})
	}
}

// TestArgsSecurityProperties checks properties that must hold whatever
// the golden files say, so a careless -update cannot remove them.
func TestArgsSecurityProperties(t *testing.T) {
	snp := baseConfig(TEESNP)
	snp.CPU = "EPYC-v4"
	snp.SNP = SNPConfig{Policy: 0x30000, CBitPos: 51, ReducedPhysBits: 1}
	tdx := baseConfig(TEETDX)
	tdx.TDX.QGSSocket = "/run/qgs.sock"
	sim := baseConfig(TEESim)
	sim.SPSocket = "/x/sp.sock"
	tests := map[string]struct {
		cfg      Config
		want     []string
		wantNone []string
	}{
		"sev-snp": {cfg: snp, want: []string{
			"confidential-guest-support=sev0", "kernel-hashes=on", "memory-backend-memfd", "sev-snp-guest",
			"policy=0x30000", "cbitpos=51", "reduced-phys-bits=1", "iommu_platform=on", "restrict=on", "-accel\nkvm",
			"spawn=deny", "elevateprivileges=deny", "guestfwd=tcp:10.0.2.100:8443-tcp:127.0.0.1:8443,,reconnect=1",
		}, wantNone: []string{"tpmdev", "tcg", "virtserialport", "cmd:"}},
		"tdx": {cfg: tdx, want: []string{
			"confidential-guest-support=tdx0", "kernel-irqchip=split", `"qom-type":"tdx-guest"`,
			`"quote-generation-socket":{"path":"/run/qgs.sock","type":"unix"}`, "iommu_platform=on", "restrict=on",
			"spawn=deny", "elevateprivileges=deny", "guestfwd=tcp:10.0.2.100:8443-tcp:127.0.0.1:8443,,reconnect=1",
		}, wantNone: []string{"tpmdev", "tcg", "virtserialport", "cmd:"}},
		"sim": {cfg: sim, want: []string{
			"-accel\ntcg", "-cpu\nmax", "virtserialport,bus=vser0.0,chardev=sp,name=confidant.sp", "-no-reboot", "restrict=on",
			// One relay per guest connection; the comma in its path doubled.
			"restrict=on,guestfwd=tcp:10.0.2.100:8443-cmd:'/opt/confidant,,test/confidant-hostd' relay --to 127.0.0.1:8443\n",
			"-sandbox\non,obsolete=deny,resourcecontrol=deny\n", "server=on,wait=off", "append=on",
		}, wantNone: []string{"confidential-guest-support", "tpmdev", "reconnect"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			args, err := Args(tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			joined := strings.Join(args, "\n")
			for _, w := range tc.want {
				if !strings.Contains(joined, w) {
					t.Errorf("arguments lack %q", w)
				}
			}
			for _, w := range tc.wantNone {
				if strings.Contains(joined, w) {
					t.Errorf("arguments contain %q", w)
				}
			}
			if !strings.Contains(joined, "file=/srv/images/demo,,v1/os.img") {
				t.Errorf("comma in a path not escaped")
			}
		})
	}
}

func TestArgsRejects(t *testing.T) {
	tests := map[string]func(*Config){
		"unknown tee":        func(c *Config) { c.TEE = "sgx" },
		"no kernel":          func(c *Config) { c.Kernel = "" },
		"no firmware":        func(c *Config) { c.Firmware = "" },
		"zero vcpus":         func(c *Config) { c.VCPUs = 0 },
		"zero memory":        func(c *Config) { c.MemoryMiB = 0 },
		"no qmp":             func(c *Config) { c.QMPSocket = "" },
		"sim without sp":     func(c *Config) { c.SPSocket = "" },
		"verifier with dash": func(c *Config) { c.VerifierHost = "a,b" },
		"bad port":           func(c *Config) { c.VerifierPort = 70000 },
		"bad tpm device":     func(c *Config) { c.TPMSocket = "/x"; c.TPMDevice = "tpm-spapr" },
		"newline in append":  func(c *Config) { c.Append = "a\nb" },
		"igvm on sim":        func(c *Config) { c.IGVM = true },
		"name with comma":    func(c *Config) { c.Name = "a,b" },
		"sim without relay":  func(c *Config) { c.Relay = "" },
		"relative relay":     func(c *Config) { c.Relay = "confidant-hostd" },
		"quote in relay":     func(c *Config) { c.Relay = "/opt/a'; rm -rf /'" },
		"backslash in relay": func(c *Config) { c.Relay = `/opt/a\b` },
		"newline in relay":   func(c *Config) { c.Relay = "/opt/a\nb" },
		"add-fd stdin":       func(c *Config) { c.AddFDs = []AddFD{{FD: 0, Set: 1, Opaque: "x"}} },
		"add-fd comma":       func(c *Config) { c.AddFDs = []AddFD{{FD: 3, Set: 1, Opaque: "x,fd=0"}} },
		"mrconfigid on sim":  func(c *Config) { c.TDX.MRConfigID[0] = 1 },
	}
	for name, mut := range tests {
		t.Run(name, func(t *testing.T) {
			c := baseConfig(TEESim)
			c.SPSocket = "/x/sp.sock"
			mut(&c)
			if _, err := Args(c); !errors.Is(err, ErrConfig) {
				t.Fatalf("Args() error = %v, want ErrConfig", err)
			}
		})
	}
	tdx := baseConfig(TEETDX)
	if _, err := Args(tdx); !errors.Is(err, ErrConfig) {
		t.Fatalf("Args(tdx without QGS) error = %v, want ErrConfig", err)
	}
}

func TestParseVersion(t *testing.T) {
	tests := map[string]struct {
		in      string
		want    Version
		wantErr error
	}{
		"debian":   {in: "QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)\nCopyright (c) 2003-2022", want: Version{7, 2, 22}},
		"upstream": {in: "QEMU emulator version 10.1.0\n", want: Version{10, 1, 0}},
		"two part": {in: "QEMU emulator version 9.1\n", want: Version{9, 1, 0}},
		"garbage":  {in: "hello", wantErr: ErrVersion},
		"empty":    {in: "", wantErr: ErrVersion},
		"not qemu": {in: "QEMU emulator version x.y", wantErr: ErrVersion},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			v, err := ParseVersion([]byte(tc.in))
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("ParseVersion() error = %v, want %v", err, tc.wantErr)
			}
			if v != tc.want {
				t.Fatalf("ParseVersion() = %v, want %v", v, tc.want)
			}
		})
	}
	if !(Version{9, 1, 0}).AtLeast(9, 1) || (Version{9, 0, 5}).AtLeast(9, 1) || !(Version{10, 0, 0}).AtLeast(9, 1) {
		t.Fatal("AtLeast is wrong")
	}
}

func FuzzParseVersion(f *testing.F) {
	f.Add([]byte("QEMU emulator version 7.2.22 (Debian)"))
	f.Add([]byte("QEMU emulator version 99999.1"))
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := ParseVersion(b)
		if err == nil && (v.Major < 0 || v.Minor < 0 || v.Micro < 0) {
			t.Fatalf("negative version %v", v)
		}
	})
}

// TestArgsIdentity: the guest's identity reaches QEMU in the field its TEE
// reserves for it, and the OS disk can come as inherited descriptors.
func TestArgsIdentity(t *testing.T) {
	snp := baseConfig(TEESNP)
	snp.SNP = SNPConfig{Policy: 0x30000, CBitPos: 51, ReducedPhysBits: 1, HostData: testIdentity32()}
	snp.OSDisk = "/dev/fdset/1"
	snp.AddFDs = []AddFD{{FD: 3, Set: 1, Opaque: "os-disk-rw"}, {FD: 4, Set: 1, Opaque: "os-disk-ro"}}
	args, err := Args(snp)
	if err != nil {
		t.Fatal(err)
	}
	joined := strings.Join(args, "\n")
	for _, w := range []string{
		",host-data=AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=\n",
		"-add-fd\nfd=3,set=1,opaque=os-disk-rw\n-add-fd\nfd=4,set=1,opaque=os-disk-ro\n-drive\nfile=/dev/fdset/1,if=none,id=osdisk",
	} {
		if !strings.Contains(joined, w) {
			t.Errorf("sev-snp arguments lack %q", w)
		}
	}
	tdx := baseConfig(TEETDX)
	tdx.TDX = TDXConfig{QGSSocket: "/run/qgs.sock", MRConfigID: testIdentity48()}
	if args, err = Args(tdx); err != nil {
		t.Fatal(err)
	}
	if want := `"mrconfigid":"gIGCg4SFhoeIiYqLjI2Oj5CRkpOUlZaXmJmam5ydnp+goaKjpKWmp6ipqqusra6v"`; !strings.Contains(strings.Join(args, "\n"), want) {
		t.Errorf("tdx arguments lack %s", want)
	}
}
