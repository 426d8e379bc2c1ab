// Command spinit is the /init of the test guest that TestSimGuestReports
// boots: it loads the virtio modules listed in /modules.list, finds the
// simulated secure processor's virtio-serial port, asks for a report over
// shared/simsp, prints one line with the report's MEASUREMENT and HOST_DATA
// (and the head of the OS disk, if there is one) on the serial console and
// powers the guest off.
package main

import (
	"bytes"
	"context"
	"crypto/sha512"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/confidant-cvm/confidant/shared/simsp"
	"golang.org/x/sys/unix"
)

func main() {
	err := run()
	if err != nil {
		fmt.Printf("SPINIT-ERROR %v\n", err)
	}
	unix.Sync()
	_ = unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	select {}
}

func run() error {
	for _, m := range []struct{ src, dst, fs string }{
		{"proc", "/proc", "proc"}, {"sysfs", "/sys", "sysfs"}, {"devtmpfs", "/dev", "devtmpfs"},
	} {
		_ = os.MkdirAll(m.dst, 0o755)
		if err := unix.Mount(m.src, m.dst, m.fs, 0, ""); err != nil && err != unix.EBUSY {
			return fmt.Errorf("mounting %s: %w", m.dst, err)
		}
	}
	list, err := os.ReadFile("/modules.list")
	if err != nil {
		return fmt.Errorf("reading /modules.list: %w", err)
	}
	for _, mod := range strings.Fields(string(list)) {
		if err := loadModule(mod); err != nil {
			return err
		}
	}
	port, err := findPort(simsp.PortName, 10*time.Second)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(port, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("opening %s: %w", port, err)
	}
	defer f.Close()
	cmdline, _ := os.ReadFile("/proc/cmdline")
	stay := strings.Contains(string(cmdline), "spinit.stay")
	for n := 1; ; n++ {
		// A new client each round: a timed-out client is unusable.
		err := report(simsp.NewClient(f), n)
		if !stay {
			return err
		}
		if err != nil {
			fmt.Printf("SPINIT-RETRY n=%d %v\n", n, err)
		}
		time.Sleep(time.Second)
	}
}

func report(c *simsp.Client, n int) error {
	rd := sha512.Sum512([]byte("confidant-hostd boot test"))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	report, certs, err := c.GetReport(ctx, rd)
	if err != nil {
		return fmt.Errorf("getting report: %w", err)
	}
	if len(report) < 0xC0 {
		return fmt.Errorf("report is %d bytes", len(report))
	}
	if len(report) < 0xE0 {
		return fmt.Errorf("report is %d bytes", len(report))
	}
	fmt.Printf("SPINIT-REPORT n=%d measurement=%s report_data_ok=%t policy=%#x cert_table_bytes=%d tpm=%s host_data=%s os_disk=%s\n",
		n, hex.EncodeToString(report[0x90:0xC0]), bytes.Equal(report[0x50:0x90], rd[:]),
		binary.LittleEndian.Uint64(report[0x08:]), len(certs), tpmState(), hex.EncodeToString(report[0xC0:0xE0]), osDisk())
	return nil
}

func loadModule(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("opening module %s: %w", path, err)
	}
	defer f.Close()
	if err := unix.FinitModule(int(f.Fd()), "", 0); err != nil && err != unix.EEXIST {
		return fmt.Errorf("loading module %s: %w", path, err)
	}
	return nil
}

func findPort(name string, wait time.Duration) (string, error) {
	deadline := time.Now().Add(wait)
	for {
		names, _ := filepath.Glob("/sys/class/virtio-ports/*/name")
		for _, n := range names {
			b, err := os.ReadFile(n)
			if err == nil && strings.TrimSpace(string(b)) == name {
				dev := "/dev/" + filepath.Base(filepath.Dir(n))
				if _, err := os.Stat(dev); err == nil {
					return dev, nil
				}
			}
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("no virtio-serial port named %s", name)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// osDisk returns the first 16 bytes (hex) of the disk whose serial is
// confidant-os, or "absent".
func osDisk() string {
	deadline := time.Now().Add(3 * time.Second)
	for {
		serials, _ := filepath.Glob("/sys/block/vd*/serial")
		for _, p := range serials {
			b, err := os.ReadFile(p)
			if err != nil || strings.TrimSpace(string(b)) != "confidant-os" {
				continue
			}
			f, err := os.Open("/dev/" + filepath.Base(filepath.Dir(p)))
			if err != nil {
				return "unreadable"
			}
			defer f.Close()
			head := make([]byte, 16)
			if _, err := f.ReadAt(head, 0); err != nil {
				return "unreadable"
			}
			return hex.EncodeToString(head)
		}
		if time.Now().After(deadline) {
			return "absent"
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// tpmState reports whether the vTPM is there and PCR 0 was extended by the
// firmware.
func tpmState() string {
	if _, err := os.Stat("/dev/tpm0"); err != nil {
		return "absent"
	}
	b, err := os.ReadFile("/sys/class/tpm/tpm0/pcr-sha256/0")
	if err != nil {
		return "present"
	}
	pcr0 := strings.TrimSpace(string(b))
	if strings.Trim(pcr0, "0") == "" {
		return "present,pcr0=zero"
	}
	return "present,pcr0=" + strings.ToLower(pcr0)[:16]
}
