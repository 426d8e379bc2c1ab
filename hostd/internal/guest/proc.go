package guest

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// procStart returns the start time (clock ticks since boot, field 22 of
// /proc/PID/stat) of a live, non-zombie process.
func procStart(pid int) (uint64, bool) {
	if pid <= 0 {
		return 0, false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return 0, false
	}
	fields := strings.Fields(s[i+2:])
	// fields[0] is field 3 (state); start time is field 22.
	if len(fields) < 20 || fields[0] == "Z" || fields[0] == "X" {
		return 0, false
	}
	v, err := strconv.ParseUint(fields[19], 10, 64)
	if err != nil {
		return 0, false
	}
	return v, true
}

// sameProcess reports whether pid is alive and still the process that had
// start time start. An unknown start time (0) never matches.
func sameProcess(pid int, start uint64) bool {
	st, ok := procStart(pid)
	return ok && start != 0 && st == start
}

func kill(pid int, start uint64) {
	if sameProcess(pid, start) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}
