package boot

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// Halt flushes the filesystems and powers the machine off, or reboots it.
// It returns only if the kernel refused.
func Halt(reboot bool) error {
	unix.Sync()
	cmd, what := unix.LINUX_REBOOT_CMD_POWER_OFF, "powering off"
	if reboot {
		cmd, what = unix.LINUX_REBOOT_CMD_RESTART, "rebooting"
	}
	if err := unix.Reboot(cmd); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}
