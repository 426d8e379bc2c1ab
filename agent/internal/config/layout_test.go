package config

import (
	"testing"

	"github.com/confidant-cvm/confidant/shared/initramfs"
)

// TestDefaultsMatchInitramfsLayout: the defaults name the files where the
// image tool puts them.
func TestDefaultsMatchInitramfsLayout(t *testing.T) {
	for _, c := range []struct{ agent, image string }{
		{DefaultPath, initramfs.ConfigPath},
		{DefaultCAFile, initramfs.CAPath},
		{DefaultModulesFile, initramfs.ModulesListPath},
	} {
		if c.agent != c.image {
			t.Errorf("agent default %s, initramfs layout %s", c.agent, c.image)
		}
	}
}
