package qemu

import (
	"errors"
	"strings"
	"testing"
)

// uefiConfig is a sim guest booting OVMF with Secure Boot, its OS disk
// and ESP passed as descriptors, as hostd launches one.
func uefiConfig() Config {
	c := baseConfig(TEESim)
	c.UEFI = true
	c.Kernel, c.Initrd, c.Append = "", "", ""
	c.Firmware = "/var/lib/confidant-hostd/guests/demo/boot/firmware"
	c.UEFIVars = "/var/lib/confidant-hostd/guests/demo/uefi-vars.fd"
	c.OSDisk = "/dev/fdset/1"
	c.ESP = "/dev/fdset/2"
	c.AddFDs = []AddFD{{FD: 3, Set: 1, Opaque: "os-disk-rw"}, {FD: 4, Set: 1, Opaque: "os-disk-ro"}, {FD: 5, Set: 2, Opaque: "esp-ro"}}
	c.SPSocket = "/var/lib/confidant-hostd/guests/demo/sp.sock"
	c.TPMSocket = "/var/lib/confidant-hostd/guests/demo/tpm/swtpm.sock"
	c.TPMDevice = "tpm-crb"
	return c
}

// TestUEFIArgsProperties checks what must hold whatever the golden file
// says: Secure Boot's SMM setup, read-only code and ESP, the ESP before the
// OS disk, and never a direct kernel boot.
func TestUEFIArgsProperties(t *testing.T) {
	args, err := Args(uefiConfig())
	if err != nil {
		t.Fatal(err)
	}
	joined := strings.Join(args, "\n") + "\n"
	for _, w := range []string{
		"-machine\nq35,smm=on,accel=tcg\n",
		"-global\ndriver=cfi.pflash01,property=secure,value=on\n",
		"-global\nICH9-LPC.disable_s3=1\n",
		"if=pflash,format=raw,unit=0,file=/var/lib/confidant-hostd/guests/demo/boot/firmware,readonly=on\n",
		"if=pflash,format=raw,unit=1,file=/var/lib/confidant-hostd/guests/demo/uefi-vars.fd\n",
		"file=/dev/fdset/2,if=none,id=esp,format=raw,readonly=on\n",
		"serial=confidant-esp",
		"tpm-crb,tpmdev=tpm0", "name=confidant.sp", "-no-reboot", "restrict=on",
	} {
		if !strings.Contains(joined, w) {
			t.Errorf("arguments lack %q", w)
		}
	}
	for _, w := range []string{"-kernel", "-initrd", "-append", "-bios"} {
		if strings.Contains(joined, w+"\n") {
			t.Errorf("UEFI arguments contain %s", w)
		}
	}
	// The ESP is the last disk: the OS and temp disks keep vda and vdb,
	// which the agent's configuration names.
	if strings.Index(joined, "id=esp") < strings.Index(joined, "id=osdisk") || strings.Index(joined, "id=esp") < strings.Index(joined, "id=tempdisk") {
		t.Errorf("the ESP comes before the OS or temp disk")
	}
	if strings.Index(joined, "-add-fd") > strings.Index(joined, "id=esp") || strings.Count(joined, "-add-fd") != 3 {
		t.Errorf("descriptors not added once each before the ESP")
	}
}

func TestUEFIArgsRejects(t *testing.T) {
	tests := map[string]func(*Config){
		"kernel":      func(c *Config) { c.Kernel = "/k" },
		"initrd":      func(c *Config) { c.Initrd = "/i" },
		"append":      func(c *Config) { c.Append = "console=ttyS0" },
		"no esp":      func(c *Config) { c.ESP = "" },
		"no vars":     func(c *Config) { c.UEFIVars = "" },
		"no firmware": func(c *Config) { c.Firmware = "" },
		"sev-snp":     func(c *Config) { c.TEE = TEESNP },
	}
	for name, mut := range tests {
		t.Run(name, func(t *testing.T) {
			c := uefiConfig()
			mut(&c)
			if _, err := Args(c); !errors.Is(err, ErrConfig) {
				t.Fatalf("Args() error = %v, want ErrConfig", err)
			}
		})
	}
	// An ESP on a direct-boot guest is a mistake too.
	c := baseConfig(TEESim)
	c.SPSocket = "/x/sp.sock"
	c.ESP = "/e"
	if _, err := Args(c); !errors.Is(err, ErrConfig) {
		t.Fatalf("Args(direct boot with an ESP) error = %v, want ErrConfig", err)
	}
}
