package cli

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/confidant-cvm/confidant/images/internal/encrypt"
)

// maxPassphrase bounds a recovery passphrase file (cryptsetup reads at most
// 8 MiB from a key file; a passphrase someone types is far shorter).
const maxPassphrase = 8 << 10

// keyFlags are the disk key flags shared by encrypt and build.
type keyFlags struct {
	keyFile      string
	generateKey  bool
	recoveryFile string
	uuid         string
	label        string
}

func (k *keyFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&k.keyFile, "key-file", "", "disk key file: 32 raw bytes, mode 0600 (required)")
	fl.BoolVar(&k.generateKey, "generate-key", false, "write a new random key to --key-file (which must not exist) instead of reading it")
	fl.StringVar(&k.recoveryFile, "recovery-passphrase-file", "", "put this file's passphrase (one trailing newline removed) in LUKS keyslot 1, for stock cryptsetup")
	fl.StringVar(&k.uuid, "uuid", "", "LUKS UUID of the disk (default: random)")
	fl.StringVar(&k.label, "label", "", "LUKS label of the disk")
}

// readPassphraseFile reads a recovery passphrase: the file's bytes without
// one trailing newline; empty is refused.
func readPassphraseFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("opening recovery passphrase file: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxPassphrase+1))
	if err != nil {
		return nil, fmt.Errorf("reading recovery passphrase file: %w", err)
	}
	if len(b) > maxPassphrase {
		clear(b)
		return nil, fmt.Errorf("%w: recovery passphrase file %s is larger than %d bytes", ErrUsage, path, maxPassphrase)
	}
	p := bytes.TrimSuffix(bytes.TrimSuffix(b, []byte("\n")), []byte("\r"))
	if len(p) == 0 {
		return nil, fmt.Errorf("%w: recovery passphrase file %s is empty", ErrUsage, path)
	}
	return p, nil
}

type encryptFlags struct {
	in, out string
	key     keyFlags
}

func newEncryptCmd(env Env, g *globalFlags) *cobra.Command {
	var f encryptFlags
	cmd := &cobra.Command{
		Use:   "encrypt --in PLAIN.img --out DISK.img --key-file KEY [--generate-key] [flags]",
		Short: "Encrypt a raw ext4 root filesystem into a LUKS2 OS disk, offline",
		Long: `Encrypt a raw ext4 image (made with mke2fs -t ext4 -b 4096) into the LUKS2 OS
disk a Confidant guest boots from, without root, loop devices or
device-mapper. The layout is cryptsetup's default: aes-xts-plain64 with a
512-bit volume key, 4096-byte sectors, data at 16 MiB.

Keyslot 0 opens with the disk key, the 32 raw bytes in --key-file, which the
verifier releases to an attested guest. The key file must be readable by its
owner only (mode 0600). With --generate-key a new random key is written to
--key-file (mode 0600; an existing file is never replaced); the key is never
printed. With --recovery-passphrase-file, keyslot 1 holds that passphrase
behind argon2id, so the disk also opens with stock cryptsetup.

The disk is written next to --out and renamed into place after it was read
back and checked, so a failed run leaves no partial disk. Progress goes to
stderr (a bar on a terminal); the LUKS UUID, the only line on stdout, is what
the agent configuration's os_disk.luks_uuid must name.`,
		Example: `  mke2fs -q -t ext4 -b 4096 -d rootfs/ rootfs.img 256M
  confidant-image encrypt --in rootfs.img --out os.img \
    --key-file disk.key --generate-key --recovery-passphrase-file recovery.txt
  cryptsetup open --test-passphrase --key-file disk.key os.img   # checks the key`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runEncrypt(cmd, f, env, g)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.in, "in", "", "raw ext4 image to encrypt (required)")
	fl.StringVar(&f.out, "out", "", "LUKS2 disk image to write (required)")
	f.key.register(cmd)
	for _, name := range []string{"in", "out", "key-file"} {
		_ = cmd.MarkFlagRequired(name) // the flags exist: error impossible
	}
	return cmd
}

func runEncrypt(cmd *cobra.Command, f encryptFlags, env Env, g *globalFlags) error {
	log := g.logger(env)
	spec := encrypt.Spec{Input: f.in, Output: f.out, UUID: f.key.uuid, Label: f.key.label}
	if f.key.recoveryFile != "" {
		p, err := readPassphraseFile(f.key.recoveryFile)
		if err != nil {
			return err
		}
		defer clear(p)
		spec.RecoveryPassphrase = p
	}
	var generated bool
	if f.key.generateKey {
		key, err := encrypt.CreateKeyFile(f.key.keyFile, nil)
		if err != nil {
			return err
		}
		generated = true
		spec.DiskKey = key
	} else {
		key, err := encrypt.ReadKeyFile(f.key.keyFile)
		if err != nil {
			return err
		}
		spec.DiskKey = key
	}
	defer clear(spec.DiskKey)
	bar := newProgress(env.Stderr, "encrypting")
	spec.Progress = bar.update
	res, err := encrypt.Encrypt(cmd.Context(), spec, log)
	bar.finish()
	if err != nil {
		if generated {
			// The key belongs to no disk: do not leave it to be registered.
			err = errors.Join(err, removeGenerated(f.key.keyFile))
		}
		return err
	}
	clear(res.DiskKey)
	if generated {
		fmt.Fprintf(env.Stderr, "generated a new disk key in %s (mode 0600)\n", f.key.keyFile)
	}
	fmt.Fprintf(env.Stderr, "wrote %s (%d bytes, LUKS2, data at %d MiB)\n", f.out, res.Size, res.DataOffset>>20)
	fmt.Fprintln(env.Stdout, res.UUID)
	return nil
}

func removeGenerated(path string) error {
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("removing the generated key file: %w", err)
	}
	return nil
}
