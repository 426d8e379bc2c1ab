// Command confidant-guestcheck runs inside the booted demo OS and prints
// what it sees of Confidant's work: the root filesystem and the temp disk,
// the dm-crypt mappings under them (key material redacted), and the
// attestation token's main claims. Every line it prints is
//
//	guestcheck: {"check":"<name>",...}
//
// with one compact JSON object, in this order: root, temp, dm, token,
// summary. The summary line carries "ok" and the list of problems. The exit
// status is 0 when ok, 1 when not, 2 when the output could not be written.
//
// It is built static (CGO_ENABLED=0) by scripts/mkrootfs.sh and installed
// as /usr/bin/confidant-guestcheck.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
)

func main() {
	temp := flag.String("temp", "/mnt/resource", "mount point of the temp disk")
	token := flag.String("token", "/run/confidant/token.jwt", "where the agent leaves the attestation token")
	flag.Parse()

	c := &checker{
		root:      "/",
		tempMount: filepath.Clean(*temp),
		tokenPath: *token,
		tables:    ioctlTables{control: "/dev/mapper/control"},
	}
	ok, err := c.run(os.Stdout)
	if err != nil {
		fmt.Fprintf(os.Stderr, "guestcheck: %v\n", err)
		os.Exit(2)
	}
	if !ok {
		os.Exit(1)
	}
}
