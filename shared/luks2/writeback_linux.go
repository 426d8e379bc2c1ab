//go:build linux && (amd64 || arm64 || riscv64 || ppc64le || s390x || loong64)

package luks2

import (
	"os"
	"syscall"
)

// writeback asks the kernel to start writing ranges of a file back to its
// device without waiting for them (sync_file_range(2) with
// SYNC_FILE_RANGE_WRITE), so that the disk works while the CPU encrypts the
// next chunks and the final fsync finds little left to write. It is only a
// hint: it makes nothing durable (the caller still syncs) and its errors are
// ignored (a pipe, or a filesystem that does not support it, just gets no
// hint).
type writeback struct {
	rc syscall.RawConn
}

func newWriteback(f *os.File) writeback {
	rc, err := f.SyscallConn()
	if err != nil {
		return writeback{}
	}
	return writeback{rc: rc}
}

// syncFileRangeWrite is SYNC_FILE_RANGE_WRITE from <linux/fs.h>.
const syncFileRangeWrite = 2

func (w writeback) start(off, n int64) {
	if w.rc == nil {
		return
	}
	_ = w.rc.Control(func(fd uintptr) {
		_, _, _ = syscall.Syscall6(syscall.SYS_SYNC_FILE_RANGE, fd, uintptr(off), uintptr(n), syncFileRangeWrite, 0, 0)
	})
}
