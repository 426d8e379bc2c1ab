// Command dmcreate makes device-mapper mappings inside the test guest of
// TestMkrootfs, where there is no cryptsetup or dmsetup:
//
//	dmcreate crypt NAME UUID DEVICE SECTORS KEYHEX          key in the table
//	dmcreate crypt-keyring NAME UUID DEVICE SECTORS KEYHEX  key in a logon key
//	dmcreate linear NAME DEVICE SECTORS
//
// Crypt mappings are aes-xts-plain64 with 4096-byte sectors, as LUKS2 sets
// them up. It is a test tool, built only by the test.
package main

import (
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strconv"

	"github.com/anatol/devmapper.go"
	"golang.org/x/sys/unix"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "dmcreate: %v\n", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 0 {
		return errors.New("usage: dmcreate crypt|crypt-keyring|linear [args]")
	}
	switch args[0] {
	case "crypt", "crypt-keyring":
		if len(args) != 6 {
			return fmt.Errorf("usage: dmcreate %s NAME UUID DEVICE SECTORS KEYHEX", args[0])
		}
		sectors, err := strconv.ParseUint(args[4], 10, 64)
		if err != nil {
			return fmt.Errorf("parsing sectors: %w", err)
		}
		key, err := hex.DecodeString(args[5])
		if err != nil {
			return fmt.Errorf("decoding key: %w", err)
		}
		table := devmapper.CryptTable{
			Length:        sectors * devmapper.SectorSize,
			BackendDevice: args[3],
			Encryption:    "aes-xts-plain64",
			SectorSize:    4096,
		}
		if args[0] == "crypt" {
			table.Key = key
		} else {
			desc := "confidant-test:" + args[1]
			if _, err := unix.AddKey("logon", desc, key, unix.KEY_SPEC_USER_KEYRING); err != nil {
				return fmt.Errorf("adding logon key: %w", err)
			}
			table.KeyID = fmt.Sprintf(":%d:logon:%s", len(key), desc)
		}
		if err := devmapper.CreateAndLoad(args[1], args[2], 0, table); err != nil {
			return fmt.Errorf("creating %s: %w", args[1], err)
		}
	case "linear":
		if len(args) != 4 {
			return fmt.Errorf("usage: dmcreate linear NAME DEVICE SECTORS")
		}
		sectors, err := strconv.ParseUint(args[3], 10, 64)
		if err != nil {
			return fmt.Errorf("parsing sectors: %w", err)
		}
		table := devmapper.LinearTable{Length: sectors * devmapper.SectorSize, BackendDevice: args[2]}
		if err := devmapper.CreateAndLoad(args[1], "", 0, table); err != nil {
			return fmt.Errorf("creating %s: %w", args[1], err)
		}
	default:
		return fmt.Errorf("unknown mapping kind %q", args[0])
	}
	return nil
}
