// Command record is a throwaway guest /init that recorded the QEMU + swtpm
// evidence in ../ (see ../README.md). It is not part of any build: it lives
// under testdata so `go build ./...` skips it.
//
//	CGO_ENABLED=0 go build -o init ./shared/tpm/testdata/record
package main

import (
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"os"
	"strings"
	"syscall"

	"github.com/confidant-cvm/confidant/shared/tpm"
)

func main() {
	_ = os.MkdirAll("/dev", 0o755)
	_ = syscall.Mount("devtmpfs", "/dev", "devtmpfs", 0, "")
	_ = os.MkdirAll("/sys", 0o755)
	_ = syscall.Mount("sysfs", "/sys", "sysfs", 0, "")
	_ = syscall.Mount("securityfs", "/sys/kernel/security", "securityfs", 0, "")
	out, err := os.OpenFile("/dev/console", os.O_WRONLY, 0)
	if err != nil {
		out = os.Stdout
	}
	if err := run(out); err != nil {
		fmt.Fprintf(out, "RECORD-ERROR: %v\n", err)
	}
	syscall.Sync()
	_ = syscall.Reboot(syscall.LINUX_REBOOT_CMD_POWER_OFF)
}

func run(out *os.File) error {
	log, err := os.ReadFile(tpm.EventLogPath)
	if err != nil {
		return err
	}
	rw, err := os.OpenFile("/dev/tpmrm0", os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer rw.Close()
	a, err := tpm.NewAttester(rw)
	if err != nil {
		return err
	}
	defer a.Close()
	nonce := sha256.Sum256([]byte("confidant recorded evidence"))
	att, err := a.Attest(nonce[:], log)
	if err != nil {
		return err
	}
	s := base64.StdEncoding.EncodeToString(att)
	var b strings.Builder
	b.WriteString("BEGIN-ATTESTATION\n")
	for len(s) > 0 {
		n := min(76, len(s))
		b.WriteString(s[:n] + "\n")
		s = s[n:]
	}
	b.WriteString("END-ATTESTATION\n")
	_, err = out.WriteString(b.String())
	return err
}
