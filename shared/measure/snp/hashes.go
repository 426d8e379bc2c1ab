package snp

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
)

// GUIDs of QEMU's SEV hash table (target/i386/sev.c), on-disk byte order.
var (
	// 9438d606-4f22-4cc9-b479-a793d411fd21
	guidHashTableHeader = [16]byte{0x06, 0xd6, 0x38, 0x94, 0x22, 0x4f, 0xc9, 0x4c, 0xb4, 0x79, 0xa7, 0x93, 0xd4, 0x11, 0xfd, 0x21}
	// 4de79437-abd2-427f-b835-d5b172d2045b
	guidHashKernel = [16]byte{0x37, 0x94, 0xe7, 0x4d, 0xd2, 0xab, 0x7f, 0x42, 0xb8, 0x35, 0xd5, 0xb1, 0x72, 0xd2, 0x04, 0x5b}
	// 44baf731-3a2f-4bd7-9af1-41e29169781d
	guidHashInitrd = [16]byte{0x31, 0xf7, 0xba, 0x44, 0x2f, 0x3a, 0xd7, 0x4b, 0x9a, 0xf1, 0x41, 0xe2, 0x91, 0x69, 0x78, 0x1d}
	// 97d02dd8-bd20-4c94-aa78-e7714d36ab2a
	guidHashCmdline = [16]byte{0xd8, 0x2d, 0xd0, 0x97, 0x20, 0xbd, 0x94, 0x4c, 0xaa, 0x78, 0xe7, 0x71, 0x4d, 0x36, 0xab, 0x2a}
)

const (
	hashEntryLen = 16 + 2 + sha256.Size    // SevHashTableEntry: guid, u16 len, hash (50)
	hashTableLen = 16 + 2 + 3*hashEntryLen // SevHashTable: guid, u16 len, cmdline, initrd, kernel (168)
)

// HashTable returns QEMU's PaddedSevHashTable for a measured direct boot:
// the header GUID and length (168), then the entries for the command line,
// the initrd and the kernel (GUID, length 50, SHA-256), then zero padding to
// 176 bytes. The command line is hashed with its terminating NUL (QEMU
// hashes "\x00" when there is no -append); the initrd hash is of an empty
// buffer when there is none; the kernel hash is of the whole file as given
// to -kernel (QEMU hashes the setup and the kernel parts, which together are
// the unmodified file for SEV guests).
func HashTable(kernel, initrd []byte, cmdline string) [HashTableSize]byte {
	var t [HashTableSize]byte
	copy(t[0:16], guidHashTableHeader[:])
	binary.LittleEndian.PutUint16(t[16:], hashTableLen)
	cmd := sha256.Sum256(append([]byte(cmdline), 0))
	ird := sha256.Sum256(initrd)
	krn := sha256.Sum256(kernel)
	entries := []struct {
		guid *[16]byte
		hash *[sha256.Size]byte
	}{
		{&guidHashCmdline, &cmd},
		{&guidHashInitrd, &ird},
		{&guidHashKernel, &krn},
	}
	off := 18
	for _, e := range entries {
		copy(t[off:off+16], e.guid[:])
		binary.LittleEndian.PutUint16(t[off+16:], hashEntryLen)
		copy(t[off+18:off+hashEntryLen], e.hash[:])
		off += hashEntryLen
	}
	return t
}

// hashesRegion returns the bytes QEMU measures for an SNP_KERNEL_HASHES
// section of size bytes (snp_launch_update_kernel_hashes): zeros, with the
// padded hash table copied at the page offset of the firmware's hash table
// address.
func hashesRegion(table *[HashTableSize]byte, tableGPA uint32, size uint32) ([]byte, error) {
	off := int(tableGPA % PageSize)
	if off+HashTableSize > int(size) {
		return nil, fmt.Errorf("hash table at page offset 0x%x does not fit a 0x%x-byte section: %w", off, size, ErrMalformedFirmware)
	}
	r := make([]byte, size)
	copy(r[off:], table[:])
	return r, nil
}
