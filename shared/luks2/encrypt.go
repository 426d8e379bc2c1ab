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
const encryptChunk = 1 << 20

// EncryptImage writes a LUKS2 volume to out holding the inSize bytes of in
// (a raw filesystem image) encrypted in its data segment, the last sector
// zero-padded. The data is encrypted on runtime.NumCPU() workers, each reading,
// encrypting and writing 1 MiB chunks at a time; the header is written after
// the data, then out is synced, so an interrupted run leaves no valid header.
// A regular-file out is truncated first and ends exactly at the end of the
// data segment (its size defines the "dynamic" segment).
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

	st, err := out.Stat()
	if err != nil {
		return nil, fmt.Errorf("inspecting output: %w", err)
	}
	if st.Mode().IsRegular() {
		if err := out.Truncate(0); err != nil {
			return nil, fmt.Errorf("truncating output: %w", err)
		}
		if err := out.Truncate(p.dataOffset + total); err != nil {
			return nil, fmt.Errorf("sizing output: %w", err)
		}
	}
	dc, err := NewDataCipher(p.volumeKey, p.sectorSize)
	if err != nil {
		return nil, err
	}
	if err := encryptData(ctx, dc, in, inSize, total, out, p.dataOffset, progress); err != nil {
		return nil, err
	}
	if err := p.write(out); err != nil {
		return nil, err
	}
	if err := out.Sync(); err != nil {
		return nil, fmt.Errorf("syncing output: %w", err)
	}
	return p.header(), nil
}

// encryptData encrypts in[0:inSize], zero-padded to total, to
// out[dataOffset:].
func encryptData(ctx context.Context, dc *DataCipher, in io.ReaderAt, inSize, total int64, out io.WriterAt, dataOffset int64, progress func(done, total int64)) error {
	chunks := (total + encryptChunk - 1) / encryptChunk
	workers := int(min(int64(runtime.NumCPU()), chunks))
	var next atomic.Int64
	done := make(chan int64, workers)
	g, gctx := errgroup.WithContext(ctx)
	for range workers {
		g.Go(func() error {
			buf := make([]byte, encryptChunk)
			for {
				i := next.Add(1) - 1
				if i >= chunks {
					return nil
				}
				if err := gctx.Err(); err != nil {
					return err
				}
				off := i * encryptChunk
				b := buf[:min(encryptChunk, total-off)]
				m := max(0, min(int64(len(b)), inSize-off))
				if n, err := in.ReadAt(b[:m], off); int64(n) < m {
					if err == nil || err == io.EOF {
						err = io.ErrUnexpectedEOF // input shorter than inSize
					}
					return fmt.Errorf("reading input at %d: %w", off, err)
				}
				clear(b[m:])
				if err := dc.EncryptSectors(b, b, off); err != nil {
					return err
				}
				if _, err := out.WriteAt(b, dataOffset+off); err != nil {
					return fmt.Errorf("writing output at %d: %w", dataOffset+off, err)
				}
				select {
				case done <- int64(len(b)):
				case <-gctx.Done():
					return gctx.Err()
				}
			}
		})
	}
	var werr error
	go func() {
		werr = g.Wait()
		close(done)
	}()
	var sum int64
	for n := range done {
		sum += n
		if progress != nil {
			progress(sum, total)
		}
	}
	if werr != nil {
		return fmt.Errorf("encrypting image: %w", werr)
	}
	return nil
}
