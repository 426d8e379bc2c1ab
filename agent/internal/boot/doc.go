// Package boot does the agent's early-userspace work as PID 1: mounting the
// kernel filesystems, loading kernel modules with finit_module, finding the
// disks, ports and TEE interfaces the later stages use (there is no udev),
// and powering the machine off or rebooting it.
//
// Everything here talks to the kernel directly through golang.org/x/sys/unix;
// no external tool runs. Paths under /sys and /dev are taken from a Devices
// value so tests can point them at a prepared tree.
package boot
