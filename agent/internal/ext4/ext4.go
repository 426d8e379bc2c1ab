// Package ext4 makes an empty ext4 filesystem the way mkfs.ext4 does with
// lazy inode table initialization: it writes the superblock and its
// backups, the group descriptors, group 0's bitmaps and the root and
// lost+found directories, and nothing else. Every other group is marked
// uninitialized (uninit_bg: its bitmaps are computed by the kernel, its
// inode table is zeroed by the kernel in the background after mounting).
//
// The agent formats the temp disk with it. busybox's mke2fs, used before,
// writes every inode table in full: through dm-crypt that was the slowest
// step of a TCG guest's boot, and it grows with the disk (16 GiB of inode
// tables on a 1 TiB disk).
//
// The features are mkfs.ext4's defaults less the journal (a temp disk),
// resize_inode, flex_bg, 64bit and metadata_csum: ext_attr, dir_index,
// filetype, extent, sparse_super, large_file, huge_file, uninit_bg,
// dir_nlink, extra_isize; 4096-byte blocks, 256-byte inodes. e2fsck finds
// nothing to fix in the result (tests).
package ext4

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"
)

// Options describe the filesystem. Zero values are documented per field.
type Options struct {
	// Label is the volume name, at most 16 bytes; "": none.
	Label string
	// BytesPerInode sets the number of inodes; 0: 16384 (mkfs.ext4's).
	BytesPerInode int64
	// ReservedPercent of the blocks are reserved for root; 0: none.
	ReservedPercent int
	// UUID and HashSeed are the filesystem UUID and directory hash seed;
	// nil: random.
	UUID, HashSeed []byte
	// Now is the creation time; zero: time.Now().
	Now time.Time
}

// Layout constants.
const (
	blockSize      = 4096
	logBlockSize   = 2 // blockSize = 1024 << 2
	inodeSize      = 256
	blocksPerGroup = 8 * blockSize // one block bitmap block
	descSize       = 32
	firstIno       = 11
	rootIno        = 2
	lostFoundIno   = 11
	lostFoundBlks  = 4 // as mkfs.ext4: room for entries without allocating
	extraIsize     = 32
	// minGroupBlocks: a last group with fewer blocks than its metadata and
	// this many more is left out, as mkfs.ext4 does.
	minGroupBlocks = 51
)

// Superblock fields and flags.
const (
	magic            = 0xEF53
	compatExtAttr    = 0x0008
	compatDirIndex   = 0x0020
	incompatFiletype = 0x0002
	incompatExtents  = 0x0040
	roSparseSuper    = 0x0001
	roLargeFile      = 0x0002
	roHugeFile       = 0x0008
	roGdtCsum        = 0x0010
	roDirNlink       = 0x0020
	roExtraIsize     = 0x0040
	flagSignedHash   = 0x0001
	defmXattrUser    = 0x0004
	defmACL          = 0x0008
	hashHalfMD4      = 1

	bgInodeUninit = 0x0001
	bgBlockUninit = 0x0002

	extentsFlag  = 0x80000
	extentMagic  = 0xF30A
	fileTypeDir  = 2
	modeDir      = 0o040000
	maxBlocks32  = 1<<32 - 1
	maxLabelSize = 16
)

// ErrTooSmall: the device cannot hold a filesystem.
var ErrTooSmall = errors.New("too small for an ext4 filesystem")

// layout is the computed geometry.
type layout struct {
	blocks        uint64 // filesystem size in blocks
	groups        uint64
	inodesPerGrp  uint64
	itableBlocks  uint64 // per group
	gdtBlocks     uint64
	rootBlock     uint64
	lostFoundBlk0 uint64
	reserved      uint64 // blocks reserved for root
}

func plan(size, bytesPerInode int64, reservedPercent int) (layout, error) {
	var l layout
	if size < 0 {
		return l, fmt.Errorf("ext4: size %d: %w", size, ErrTooSmall)
	}
	l.blocks = min(uint64(size)/blockSize, maxBlocks32) // no 64bit feature: 16 TiB at most
	// Inodes and reserved blocks count from the whole size, as mkfs.ext4
	// counts them.
	whole := l.blocks
	inodes := whole * blockSize / uint64(bytesPerInode)
	l.reserved = whole * uint64(reservedPercent) / 100
	for {
		l.groups = (l.blocks + blocksPerGroup - 1) / blocksPerGroup
		if l.groups == 0 {
			return l, fmt.Errorf("ext4: %d bytes: %w", size, ErrTooSmall)
		}
		l.gdtBlocks = (l.groups*descSize + blockSize - 1) / blockSize
		// Inodes: one per bytesPerInode, the same number in every group,
		// filling whole inode table blocks, at most a bitmap block's worth.
		perBlock := uint64(blockSize / inodeSize)
		ipg := (inodes + l.groups - 1) / l.groups
		ipg = (ipg + perBlock - 1) / perBlock * perBlock
		l.inodesPerGrp = min(max(ipg, perBlock), 8*blockSize)
		l.itableBlocks = l.inodesPerGrp / perBlock
		last := l.groups - 1
		if last == 0 {
			if l.blocks < l.overhead(0)+1+lostFoundBlks {
				return l, fmt.Errorf("ext4: %d bytes: %w", size, ErrTooSmall)
			}
			break
		}
		if l.groupBlocks(last) >= l.overhead(last)+minGroupBlocks {
			break
		}
		// A last group too small for its metadata and some data is left
		// out, as mkfs.ext4 does.
		l.blocks = last * blocksPerGroup
	}
	if l.blocks < whole {
		l.reserved = l.reserved * l.blocks / whole // mkfs.ext4 scales it so
	}
	// Group 0 holds the root directory and lost+found after its metadata.
	l.rootBlock = l.overhead(0)
	l.lostFoundBlk0 = l.rootBlock + 1
	return l, nil
}

// groupBlocks is the number of blocks in group g (the last may be short).
func (l layout) groupBlocks(g uint64) uint64 {
	if g == l.groups-1 {
		return l.blocks - g*blocksPerGroup
	}
	return blocksPerGroup
}

// hasSuper reports whether group g holds a superblock backup (sparse_super:
// groups 0, 1 and powers of 3, 5 and 7).
func hasSuper(g uint64) bool {
	if g <= 1 {
		return true
	}
	for _, b := range []uint64{3, 5, 7} {
		n := b
		for n < g {
			n *= b
		}
		if n == g {
			return true
		}
	}
	return false
}

// overhead is the number of metadata blocks at the start of group g.
func (l layout) overhead(g uint64) uint64 {
	n := 2 + l.itableBlocks
	if hasSuper(g) {
		n += 1 + l.gdtBlocks
	}
	return n
}

// first returns the first block of group g and the block of its bitmap.
func (l layout) first(g uint64) uint64 { return g * blocksPerGroup }

func (l layout) blockBitmap(g uint64) uint64 { return l.first(g) + l.overhead(g) - 2 - l.itableBlocks }
func (l layout) inodeBitmap(g uint64) uint64 { return l.blockBitmap(g) + 1 }
func (l layout) inodeTable(g uint64) uint64  { return l.blockBitmap(g) + 2 }

// Format writes an empty ext4 filesystem of size bytes (rounded down to
// whole blocks) to w, which must read back as what was written only where
// this package wrote: every block it relies on is written. It does not
// sync w.
func Format(w io.WriterAt, size int64, opts Options) error {
	if len(opts.Label) > maxLabelSize {
		return fmt.Errorf("ext4: label %q longer than %d bytes", opts.Label, maxLabelSize)
	}
	bpi := opts.BytesPerInode
	if bpi == 0 {
		bpi = 16384
	}
	if bpi < blockSize || opts.ReservedPercent < 0 || opts.ReservedPercent > 50 {
		return fmt.Errorf("ext4: %d bytes per inode, %d%% reserved: want at least %d and 0-50%%", bpi, opts.ReservedPercent, blockSize)
	}
	l, err := plan(size, bpi, opts.ReservedPercent)
	if err != nil {
		return err
	}
	uuid, seed, err := identifiers(opts)
	if err != nil {
		return err
	}
	now := opts.Now
	if now.IsZero() {
		now = time.Now()
	}
	ts := uint32(now.Unix())

	gdt, freeBlocks, freeInodes := l.groupDescriptors(uuid)
	sb := superblock(l, opts, uuid, seed, ts, freeBlocks, freeInodes)
	if err := l.writeGroup0(w, sb, gdt, ts); err != nil {
		return err
	}
	return l.writeBackups(w, sb, gdt)
}

// identifiers returns the filesystem UUID and the directory hash seed:
// opts.UUID and opts.HashSeed, or random ones where they are nil.
func identifiers(opts Options) (uuid, seed []byte, err error) {
	uuid, seed = opts.UUID, opts.HashSeed
	for _, p := range []*[]byte{&uuid, &seed} {
		if *p == nil {
			*p = make([]byte, 16)
			if _, err := rand.Read(*p); err != nil {
				return nil, nil, fmt.Errorf("ext4: %w", err)
			}
		}
		if len(*p) != 16 {
			return nil, nil, errors.New("ext4: UUID and hash seed must be 16 bytes")
		}
	}
	return uuid, seed, nil
}

// groupDescriptors builds the group descriptor table and counts the free
// blocks and inodes of the whole filesystem.
func (l layout) groupDescriptors(uuid []byte) (gdt []byte, freeBlocks, freeInodes uint64) {
	gdt = make([]byte, l.gdtBlocks*blockSize)
	for g := range l.groups {
		used := l.overhead(g)
		inodesUsed, dirs := uint64(0), uint64(0)
		flags := uint16(bgInodeUninit)
		if g == 0 {
			used += 1 + lostFoundBlks
			inodesUsed, dirs = firstIno, 2
			flags = 0
		} else if g != l.groups-1 {
			flags |= bgBlockUninit // the last group's bitmap is written, as mkfs.ext4 does
		}
		fb, fi := l.groupBlocks(g)-used, l.inodesPerGrp-inodesUsed
		freeBlocks += fb
		freeInodes += fi
		d := gdt[g*descSize : (g+1)*descSize]
		le := binary.LittleEndian
		le.PutUint32(d[0x00:], uint32(l.blockBitmap(g)))
		le.PutUint32(d[0x04:], uint32(l.inodeBitmap(g)))
		le.PutUint32(d[0x08:], uint32(l.inodeTable(g)))
		le.PutUint16(d[0x0C:], uint16(fb))
		le.PutUint16(d[0x0E:], uint16(fi))
		le.PutUint16(d[0x10:], uint16(dirs))
		le.PutUint16(d[0x12:], flags)
		le.PutUint16(d[0x1C:], uint16(fi)) // bg_itable_unused: every free inode is at the end
		le.PutUint16(d[0x1E:], descChecksum(uuid, uint32(g), d))
	}
	return gdt, freeBlocks, freeInodes
}

// writeGroup0 writes group 0: superblock, descriptors, bitmaps, the first
// inode table block (inodes 1-16), the directories.
func (l layout) writeGroup0(w io.WriterAt, sb, gdt []byte, ts uint32) error {
	block0 := make([]byte, blockSize)
	copy(block0[1024:], sb)
	if err := writeBlocks(w, 0, block0, gdt); err != nil {
		return err
	}
	if err := writeBlocks(w, l.blockBitmap(0), l.blockBitmapOf(0), inodeBitmap0(l)); err != nil {
		return err
	}
	itable, root, lostFound := l.firstInodes(ts), dirBlock(rootIno, rootIno, true), dirBlock(lostFoundIno, rootIno, false)
	if err := writeBlocks(w, l.inodeTable(0), itable); err != nil {
		return err
	}
	lf := make([]byte, lostFoundBlks*blockSize)
	copy(lf, lostFound)
	for i := 1; i < lostFoundBlks; i++ {
		binary.LittleEndian.PutUint16(lf[i*blockSize+4:], blockSize) // an empty entry over the block
	}
	if err := writeBlocks(w, l.rootBlock, root, lf); err != nil {
		return err
	}
	return nil
}

// writeBackups writes the last group's block bitmap and the backup
// superblocks and descriptors.
func (l layout) writeBackups(w io.WriterAt, sb, gdt []byte) error {
	if last := l.groups - 1; last > 0 {
		if err := writeBlocks(w, l.blockBitmap(last), l.blockBitmapOf(last)); err != nil {
			return err
		}
	}
	for g := uint64(1); g < l.groups; g++ {
		if !hasSuper(g) {
			continue
		}
		b := make([]byte, blockSize)
		copy(b, sb)
		binary.LittleEndian.PutUint16(b[0x5A:], uint16(g)) // s_block_group_nr
		if err := writeBlocks(w, l.first(g), b, gdt); err != nil {
			return err
		}
	}
	return nil
}

func writeBlocks(w io.WriterAt, block uint64, bufs ...[]byte) error {
	off := int64(block) * blockSize
	for _, b := range bufs {
		if _, err := w.WriteAt(b, off); err != nil {
			return fmt.Errorf("ext4: writing block %d: %w", off/blockSize, err)
		}
		off += int64(len(b))
	}
	return nil
}

func superblock(l layout, opts Options, uuid, seed []byte, ts uint32, freeBlocks, freeInodes uint64) []byte {
	b := make([]byte, 1024)
	le := binary.LittleEndian
	le.PutUint32(b[0x00:], uint32(l.groups*l.inodesPerGrp))
	le.PutUint32(b[0x04:], uint32(l.blocks))
	le.PutUint32(b[0x08:], uint32(l.reserved))
	le.PutUint32(b[0x0C:], uint32(freeBlocks))
	le.PutUint32(b[0x10:], uint32(freeInodes))
	le.PutUint32(b[0x14:], 0) // s_first_data_block: 0 with 4096-byte blocks
	le.PutUint32(b[0x18:], logBlockSize)
	le.PutUint32(b[0x1C:], logBlockSize) // s_log_cluster_size
	le.PutUint32(b[0x20:], blocksPerGroup)
	le.PutUint32(b[0x24:], blocksPerGroup) // s_clusters_per_group
	le.PutUint32(b[0x28:], uint32(l.inodesPerGrp))
	le.PutUint32(b[0x30:], ts)     // s_wtime
	le.PutUint16(b[0x36:], 0xFFFF) // s_max_mnt_count: -1, no check by count
	le.PutUint16(b[0x38:], magic)
	le.PutUint16(b[0x3A:], 1)  // s_state: clean
	le.PutUint16(b[0x3C:], 1)  // s_errors: continue
	le.PutUint32(b[0x40:], ts) // s_lastcheck
	le.PutUint32(b[0x4C:], 1)  // s_rev_level: dynamic
	le.PutUint32(b[0x54:], firstIno)
	le.PutUint16(b[0x58:], inodeSize)
	le.PutUint32(b[0x5C:], compatExtAttr|compatDirIndex)
	le.PutUint32(b[0x60:], incompatFiletype|incompatExtents)
	le.PutUint32(b[0x64:], roSparseSuper|roLargeFile|roHugeFile|roGdtCsum|roDirNlink|roExtraIsize)
	copy(b[0x68:0x78], uuid)
	copy(b[0x78:0x88], opts.Label)
	copy(b[0xEC:0xFC], seed)
	b[0xFC] = hashHalfMD4
	le.PutUint32(b[0x100:], defmXattrUser|defmACL)
	le.PutUint32(b[0x108:], ts) // s_mkfs_time
	le.PutUint16(b[0x15C:], extraIsize)
	le.PutUint16(b[0x15E:], extraIsize)
	le.PutUint32(b[0x160:], flagSignedHash)
	return b
}

// blockBitmapOf is the block bitmap of group g: its metadata (and in group
// 0 the directories) in use, and the bits past a short group's end set.
func (l layout) blockBitmapOf(g uint64) []byte {
	b := make([]byte, blockSize)
	used := l.overhead(g)
	if g == 0 {
		used += 1 + lostFoundBlks
	}
	setBits(b, 0, used)
	setBits(b, l.groupBlocks(g), blocksPerGroup)
	return b
}

// inodeBitmap0 is group 0's inode bitmap: the reserved inodes and
// lost+found in use, the bits past the group's inodes set.
func inodeBitmap0(l layout) []byte {
	b := make([]byte, blockSize)
	setBits(b, 0, firstIno)
	setBits(b, l.inodesPerGrp, 8*blockSize)
	return b
}

func setBits(b []byte, from, to uint64) {
	for i := from; i < to; i++ {
		b[i/8] |= 1 << (i % 8)
	}
}

// firstInodes is the first inode table block: inodes 1-16, all zero but the
// root directory (2) and lost+found (11).
func (l layout) firstInodes(ts uint32) []byte {
	b := make([]byte, blockSize)
	dirInode(b[(rootIno-1)*inodeSize:rootIno*inodeSize], 0o755, 3, 1, l.rootBlock, ts)
	dirInode(b[(lostFoundIno-1)*inodeSize:lostFoundIno*inodeSize], 0o700, 2, lostFoundBlks, l.lostFoundBlk0, ts)
	return b
}

// dirInode fills a directory inode of nblocks contiguous blocks from start,
// mapped by one extent.
func dirInode(b []byte, perm uint16, links uint16, nblocks, start uint64, ts uint32) {
	le := binary.LittleEndian
	le.PutUint16(b[0x00:], modeDir|perm)
	le.PutUint32(b[0x04:], uint32(nblocks*blockSize)) // i_size_lo
	le.PutUint32(b[0x08:], ts)                        // atime
	le.PutUint32(b[0x0C:], ts)                        // ctime
	le.PutUint32(b[0x10:], ts)                        // mtime
	le.PutUint16(b[0x1A:], links)
	le.PutUint32(b[0x1C:], uint32(nblocks*blockSize/512)) // i_blocks_lo, 512-byte units
	le.PutUint32(b[0x20:], extentsFlag)
	// i_block: extent header, one leaf extent.
	le.PutUint16(b[0x28:], extentMagic)
	le.PutUint16(b[0x2A:], 1) // entries
	le.PutUint16(b[0x2C:], 4) // max entries in the inode
	le.PutUint16(b[0x2E:], 0) // depth
	le.PutUint32(b[0x34:], 0) // ee_block
	le.PutUint16(b[0x38:], uint16(nblocks))
	le.PutUint16(b[0x3A:], uint16(start>>32))
	le.PutUint32(b[0x3C:], uint32(start))
	le.PutUint16(b[0x80:], extraIsize)
	le.PutUint32(b[0x90:], ts) // i_crtime
}

// dirBlock is a directory's first block: ".", "..", and for the root
// "lost+found", the last entry spanning the rest of the block.
func dirBlock(self, parent uint32, withLostFound bool) []byte {
	b := make([]byte, blockSize)
	off := dirent(b, 0, self, ".", 12)
	if !withLostFound {
		dirent(b, off, parent, "..", blockSize-off)
		return b
	}
	off = dirent(b, off, parent, "..", 12)
	dirent(b, off, lostFoundIno, "lost+found", blockSize-off)
	return b
}

func dirent(b []byte, off int, ino uint32, name string, recLen int) int {
	le := binary.LittleEndian
	le.PutUint32(b[off:], ino)
	le.PutUint16(b[off+4:], uint16(recLen))
	b[off+6] = byte(len(name))
	b[off+7] = fileTypeDir
	copy(b[off+8:], name)
	return off + recLen
}

// descChecksum is the uninit_bg (gdt_csum) checksum of a 32-byte group
// descriptor: crc16 over the UUID, the group number and the descriptor up
// to its checksum field.
func descChecksum(uuid []byte, group uint32, desc []byte) uint16 {
	var g [4]byte
	binary.LittleEndian.PutUint32(g[:], group)
	c := crc16(0xFFFF, uuid)
	c = crc16(c, g[:])
	return crc16(c, desc[:0x1E])
}

// crc16 is the kernel's crc16 (polynomial 0x8005, bit-reversed).
func crc16(crc uint16, b []byte) uint16 {
	for _, x := range b {
		crc ^= uint16(x)
		for range 8 {
			if crc&1 != 0 {
				crc = crc>>1 ^ 0xA001
			} else {
				crc >>= 1
			}
		}
	}
	return crc
}
