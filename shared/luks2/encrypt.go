package luks2

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"os"
	"runtime"
	"sync/atomic"

	"golang.org/x/sync/errgroup"
)

// encryptChunk is the unit of work of EncryptImage; each worker holds one
// buffer of this size, so memory stays at NumCPU × 1 MiB whatever the image.
// (256 KiB and 512 KiB measured no faster.)
const encryptChunk = 1 << 20

// EncryptImage writes a LUKS2 volume to out holding the inSize bytes of in
// (a raw filesystem image) encrypted in its data segment, the last sector
// zero-padded. runtime.NumCPU() workers each take chunks of encryptChunk bytes
// in turn: first the keyslots area (random filler with the keyslot material),
// then the data, read, encrypted in place and written with one pwrite. The
// header copies are written after all of that, then out is synced, so an
// interrupted run leaves no valid header: any header out held before (at
// offset 0 or where a secondary copy could be) is zeroed first. A
// regular-file out is sized first and ends exactly at the end of the data
// segment (its size defines the "dynamic" segment); every byte up to there is
// rewritten. The kernel is asked to start writing each chunk back as
// soon as it is written, so the final sync has little left to wait for.
//
// progress, if not nil, is called from the calling goroutine with the bytes
// encrypted so far and the padded total, ending with done == total.
//
// The returned Header holds the volume key; the caller zeroes it.
func EncryptImage(ctx context.Context, in io.ReaderAt, inSize int64, out *os.File, opts Options, progress func(done, total int64)) (*Header, error) {
	if inSize <= 0 {
		return nil, fmt.Errorf("%w: input size %d", ErrInvalidOptions, inSize)
	}
	sectorSize := int64(cmp.Or(opts.SectorSize, defaultSector))
	if !validSectorSize(int(sectorSize)) {
		return nil, fmt.Errorf("%w: sector size %d is not 512, 1024, 2048 or 4096", ErrInvalidOptions, sectorSize)
	}
	total := (inSize + sectorSize - 1) / sectorSize * sectorSize
	p, err := newPlan(opts, total)
	if err != nil {
		return nil, err
	}
	defer p.wipe()
	if err := p.newFiller(); err != nil {
		return nil, err
	}

	st, err := out.Stat()
	if err != nil {
		return nil, fmt.Errorf("inspecting output: %w", err)
	}
	if st.Mode().IsRegular() {
		// Every byte up to the end is written below, so sizing the file is
		// enough: truncating it to zero first would only free blocks (or
		// tmpfs pages) that an existing output then has to allocate again.
		if err := out.Truncate(p.dataOffset + total); err != nil {
			return nil, fmt.Errorf("sizing output: %w", err)
		}
	}
	if err := eraseHeaders(out, p.dataOffset+total); err != nil {
		return nil, err
	}
	dc, err := NewDataCipher(p.volumeKey, p.sectorSize)
	if err != nil {
		return nil, err
	}
	if err := encryptData(ctx, dc, in, inSize, total, out, p, progress); err != nil {
		return nil, err
	}
	if err := p.writeHeaders(out); err != nil {
		return nil, err
	}
	if err := out.Sync(); err != nil {
		return nil, fmt.Errorf("syncing output: %w", err)
	}
	return p.header(), nil
}

// eraseHeaders zeroes the binary header wherever a LUKS header copy could
// be found below end (a primary or LUKS1 header at 0, a secondary copy at
// any legal header size), so that a run interrupted before it writes its own
// header leaves none behind, even over a file or device that held a volume.
// Everything it zeroes is rewritten later.
func eraseHeaders(w io.WriterAt, end int64) error {
	zero := make([]byte, binHeaderSize)
	for _, off := range append([]int64{0}, secondaryOffsets()...) {
		if off+binHeaderSize > end {
			break
		}
		if _, err := w.WriteAt(zero, off); err != nil {
			return fmt.Errorf("erasing header at %d: %w", off, err)
		}
	}
	return nil
}

// encryptData writes the keyslots area of p to out and encrypts
// in[0:inSize], zero-padded to total, to out[p.dataOffset:].
func encryptData(ctx context.Context, dc *DataCipher, in io.ReaderAt, inSize, total int64, out *os.File, p *plan, progress func(done, total int64)) error {
	w := &imageWriter{dc: dc, in: in, inSize: inSize, total: total, out: out, p: p, wb: newWriteback(out)}
	areaStart := 2 * p.hdrSize
	areaChunks := (p.dataOffset - areaStart + encryptChunk - 1) / encryptChunk
	dataChunks := (total + encryptChunk - 1) / encryptChunk
	jobs := areaChunks + dataChunks
	workers := int(min(int64(runtime.NumCPU()), jobs))
	var next atomic.Int64
	var done chan int64
	if progress != nil {
		// Room for every chunk up to a bound: the workers rarely wait for
		// the caller's goroutine to be scheduled.
		done = make(chan int64, min(dataChunks, 256))
	}
	g, gctx := errgroup.WithContext(ctx)
	for range workers {
		g.Go(func() error {
			buf := make([]byte, encryptChunk)
			for {
				j := next.Add(1) - 1
				if j >= jobs {
					return nil
				}
				if err := gctx.Err(); err != nil {
					return err
				}
				if j < areaChunks {
					if err := w.writeArea(buf, areaStart+j*encryptChunk); err != nil {
						return err
					}
					continue
				}
				n, err := w.encryptAt(buf, (j-areaChunks)*encryptChunk)
				if err != nil {
					return err
				}
				if done != nil {
					select {
					case done <- n:
					case <-gctx.Done():
						return gctx.Err()
					}
				}
			}
		})
	}
	if done == nil {
		if err := g.Wait(); err != nil {
			return fmt.Errorf("encrypting image: %w", err)
		}
		return nil
	}
	return waitReporting(g, done, progress, total)
}

// imageWriter is what encryptData's workers share: the cipher, the input
// and its size, the zero-padded total, the output and its layout.
type imageWriter struct {
	dc            *DataCipher
	in            io.ReaderAt
	inSize, total int64
	out           *os.File
	p             *plan
	wb            writeback
}

// writeArea writes the keyslots area's chunk at off (an offset in out).
func (w *imageWriter) writeArea(buf []byte, off int64) error {
	b := buf[:min(encryptChunk, w.p.dataOffset-off)]
	w.p.keyslotsArea(b, off)
	if _, err := w.out.WriteAt(b, off); err != nil {
		return fmt.Errorf("writing keyslots area: %w", err)
	}
	w.wb.start(off, int64(len(b)))
	return nil
}

// encryptAt encrypts the data chunk at off (an offset in the input, zero
// past inSize) and writes it to out; it returns the chunk's length.
func (w *imageWriter) encryptAt(buf []byte, off int64) (int64, error) {
	b := buf[:min(encryptChunk, w.total-off)]
	m := max(0, min(int64(len(b)), w.inSize-off))
	if n, err := w.in.ReadAt(b[:m], off); int64(n) < m {
		if err == nil || err == io.EOF {
			err = io.ErrUnexpectedEOF // input shorter than inSize
		}
		return 0, fmt.Errorf("reading input at %d: %w", off, err)
	}
	clear(b[m:])
	if err := w.dc.EncryptSectors(b, b, off); err != nil {
		return 0, err
	}
	if _, err := w.out.WriteAt(b, w.p.dataOffset+off); err != nil {
		return 0, fmt.Errorf("writing output at %d: %w", w.p.dataOffset+off, err)
	}
	w.wb.start(w.p.dataOffset+off, int64(len(b)))
	return int64(len(b)), nil
}

// waitReporting calls progress with the running sum of what the workers send
// on done until g's workers have finished, then returns their error.
func waitReporting(g *errgroup.Group, done chan int64, progress func(done, total int64), total int64) error {
	var werr error
	go func() {
		werr = g.Wait()
		close(done)
	}()
	var sum int64
	for n := range done {
		sum += n
		progress(sum, total)
	}
	if werr != nil {
		return fmt.Errorf("encrypting image: %w", werr)
	}
	return nil
}
