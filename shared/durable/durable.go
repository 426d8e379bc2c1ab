// Package durable makes file system changes survive a crash.
package durable

import (
	"fmt"
	"os"
)

// SyncDir fsyncs the directory dir ("": the working directory), so that
// the names created, renamed or linked in it last.
func SyncDir(dir string) error {
	if dir == "" {
		dir = "."
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("opening directory to sync: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("syncing directory %s: %w", dir, err)
	}
	return nil
}
