package initramfs

import (
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
)

// File type bits of a cpio mode (the traditional Unix st_mode encoding).
const (
	TypeMask    = 0o170000
	TypeDir     = 0o040000
	TypeReg     = 0o100000
	TypeSymlink = 0o120000
	TypeChar    = 0o020000
	TypeBlock   = 0o060000
	TypeFIFO    = 0o010000
)

// trailerName names the entry that ends every cpio archive.
const trailerName = "TRAILER!!!"

// newcMagic starts every newc header (no checksum variant).
const newcMagic = "070701"

// headerLen is the size of a newc header: the magic and 13 fields of 8 hex
// digits.
const headerLen = 6 + 13*8

// Errors returned by Writer.
var (
	// ErrWriteTooLong: more data was written than the header's Size.
	ErrWriteTooLong = errors.New("cpio: write too long")
	// ErrShortWrite: a new header or Close came before Size bytes of the
	// previous entry were written.
	ErrShortWrite = errors.New("cpio: entry shorter than its header size")
	// ErrFieldRange: a header field does not fit the 32-bit newc encoding.
	ErrFieldRange = errors.New("cpio: header field out of range")
	// ErrBadName: the entry name is empty, holds a NUL byte or is the trailer
	// name.
	ErrBadName = errors.New("cpio: invalid entry name")
	// ErrClosed: the writer was used after Close.
	ErrClosed = errors.New("cpio: writer closed")
)

// Header is one newc cpio entry. All numeric fields are written as 8 hex
// digits; the newc format limits them (and Size) to 32 bits.
type Header struct {
	// Name is the entry's path as stored: relative, without a leading "/"
	// (the kernel and GNU cpio accept both; relative is the convention).
	Name string
	// Mode holds the file type bits (TypeReg, TypeDir, ...) and the
	// permission bits (including setuid/setgid/sticky).
	Mode uint32
	// UID and GID own the entry.
	UID, GID uint32
	// Mtime is the modification time in seconds since the Unix epoch.
	Mtime int64
	// Size is the number of data bytes that follow the header: the file's
	// contents, or a symlink's target; 0 for other types.
	Size int64
	// Ino is the inode number. Entries with Nlink > 1 and the same Ino (and
	// device) are hard links of each other for the kernel's unpacker.
	Ino uint32
	// Nlink is the link count (1 for files, 2 for directories).
	Nlink uint32
	// DevMajor and DevMinor identify the device the entry came from.
	DevMajor, DevMinor uint32
	// RdevMajor and RdevMinor are the device numbers of a character or block
	// device entry.
	RdevMajor, RdevMinor uint32
}

// Writer writes a newc cpio archive. Call WriteHeader for each entry, write
// exactly Size bytes of data with Write, and Close to write the trailer.
// Writer does not close the underlying writer.
type Writer struct {
	w         io.Writer
	offset    int64 // bytes written so far, for padding
	remaining int64 // data bytes still owed to the current entry
	closed    bool
	err       error // sticky error from the underlying writer
}

// NewWriter returns a Writer that writes a newc archive to w.
func NewWriter(w io.Writer) *Writer {
	return &Writer{w: w}
}

// WriteHeader finishes the previous entry (padding its data) and writes h.
func (w *Writer) WriteHeader(h *Header) error {
	if err := w.check(); err != nil {
		return err
	}
	if h.Name == "" || strings.IndexByte(h.Name, 0) >= 0 || h.Name == trailerName {
		return fmt.Errorf("writing header for %q: %w", h.Name, ErrBadName)
	}
	if err := w.writeHeader(h); err != nil {
		return fmt.Errorf("writing header for %q: %w", h.Name, err)
	}
	return nil
}

// Write writes data of the current entry. Writing more than the header's
// Size returns ErrWriteTooLong.
func (w *Writer) Write(p []byte) (int, error) {
	if err := w.usable(); err != nil {
		return 0, err
	}
	if int64(len(p)) > w.remaining {
		n, err := w.Write(p[:w.remaining])
		if err != nil {
			return n, err
		}
		return n, ErrWriteTooLong
	}
	n, err := w.w.Write(p)
	w.offset += int64(n)
	w.remaining -= int64(n)
	if err != nil {
		w.err = err
	}
	return n, err
}

// Close writes the trailer entry and the padding after it. The archive is
// complete once Close returns nil.
func (w *Writer) Close() error {
	if err := w.check(); err != nil {
		return err
	}
	if err := w.writeHeader(&Header{Name: trailerName, Nlink: 1}); err != nil {
		return fmt.Errorf("writing cpio trailer: %w", err)
	}
	w.closed = true
	return nil
}

// usable reports why the writer cannot be used, if it cannot.
func (w *Writer) usable() error {
	if w.closed {
		return ErrClosed
	}
	return w.err
}

// check reports whether a new header may be written now.
func (w *Writer) check() error {
	if err := w.usable(); err != nil {
		return err
	}
	if w.remaining != 0 {
		return fmt.Errorf("%w: %d bytes missing", ErrShortWrite, w.remaining)
	}
	return nil
}

func (w *Writer) writeHeader(h *Header) error {
	if h.Size < 0 || h.Size > math.MaxUint32 {
		return fmt.Errorf("%w: size %d", ErrFieldRange, h.Size)
	}
	if h.Mtime < 0 || h.Mtime > math.MaxUint32 {
		return fmt.Errorf("%w: mtime %d", ErrFieldRange, h.Mtime)
	}
	nameSize := len(h.Name) + 1
	if nameSize > math.MaxUint32 {
		return fmt.Errorf("%w: name length %d", ErrFieldRange, len(h.Name))
	}
	if err := w.pad(); err != nil {
		return err
	}
	var b strings.Builder
	b.Grow(headerLen + nameSize + 3)
	b.WriteString(newcMagic)
	for _, v := range [...]uint64{
		uint64(h.Ino), uint64(h.Mode), uint64(h.UID), uint64(h.GID), uint64(h.Nlink),
		uint64(h.Mtime), uint64(h.Size), uint64(h.DevMajor), uint64(h.DevMinor),
		uint64(h.RdevMajor), uint64(h.RdevMinor), uint64(nameSize), 0, // check: unused in newc
	} {
		fmt.Fprintf(&b, "%08x", v)
	}
	b.WriteString(h.Name)
	b.WriteByte(0)
	if err := w.raw([]byte(b.String())); err != nil {
		return err
	}
	if err := w.pad(); err != nil {
		return err
	}
	w.remaining = h.Size
	return nil
}

// pad writes zero bytes up to the next multiple of four.
func (w *Writer) pad() error {
	if n := (4 - w.offset%4) % 4; n > 0 {
		return w.raw(make([]byte, n))
	}
	return nil
}

func (w *Writer) raw(p []byte) error {
	n, err := w.w.Write(p)
	w.offset += int64(n)
	if err != nil {
		w.err = err
	}
	return err
}
