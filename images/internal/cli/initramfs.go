package cli

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/confidant-cvm/confidant/shared/initramfs"
)

// ErrUsage marks bad command-line arguments.
var ErrUsage = errors.New("usage")

// initramfsFlags are the flags of "confidant-image initramfs".
type initramfsFlags struct {
	agent      string
	config     string
	ca         string
	modulesDir string
	modules    []string
	add        []string
	out        string
	epoch      string
}

func newInitramfsCmd(env Env) *cobra.Command {
	var f initramfsFlags
	cmd := &cobra.Command{
		Use:   "initramfs --agent BIN --config agent.yaml --out FILE [flags]",
		Short: "Build the guest initramfs with confidant-agent as /init",
		Long: fmt.Sprintf(`Build a gzip-compressed newc cpio initramfs that boots straight into
confidant-agent. It holds:

  %-31s the agent (must be a static binary: CGO_ENABLED=0)
  %-31s the agent configuration, copied byte for byte
  %-31s the verifier's CA certificates (--ca)
  %-31s the kernel modules, in load order
  %-31s the module files (--modules-dir, --module)
  /dev /proc /sys /run /tmp       mount points, and /dev/console
  anything added with --add SRC:DST

Modules are resolved with their dependencies from modules.dep of the kernel
the guest boots (--modules-dir /lib/modules/VERSION). Modules built into that
kernel (modules.builtin) are skipped. gzip and zstd compressed modules are
stored decompressed; xz ones are kept for the kernel to decompress. Without
--module the default list is used:
  %s

The output is reproducible: entries are sorted, owned by root and dated
SOURCE_DATE_EPOCH (or --source-date-epoch, default 0), and the gzip header
has no name or time. The file is written next to --out and renamed into place.`,
			initramfs.InitPath, initramfs.ConfigPath, initramfs.CAPath, initramfs.ModulesListPath,
			initramfs.ModulesRoot+"/VERSION/...", strings.Join(initramfs.DefaultModules(), ", ")),
		Example: `  CGO_ENABLED=0 go build -o confidant-agent ./agent/cmd/confidant-agent
  confidant-image initramfs \
    --agent confidant-agent --config agent.yaml --ca verifier-ca.pem \
    --modules-dir /lib/modules/6.1.0-56-cloud-amd64 \
    --module virtio_pci --module virtio_blk --module virtio_net \
    --module virtio_console --module configfs --module dm-crypt \
    --module xts --module ecb --module aesni_intel \
    --add /bin/busybox:/bin/busybox \
    --out initrd.img`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runInitramfs(cmd.OutOrStdout(), f, env)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.agent, "agent", "", "static confidant-agent binary, installed as /init (required)")
	fl.StringVar(&f.config, "config", "", "agent configuration YAML (required)")
	fl.StringVar(&f.ca, "ca", "", "PEM CA certificates for the verifier's TLS certificate")
	fl.StringVar(&f.modulesDir, "modules-dir", "", "kernel modules directory /lib/modules/VERSION of the guest kernel")
	fl.StringArrayVar(&f.modules, "module", nil, "kernel module to load, with its dependencies (repeatable; default: the built-in list)")
	fl.StringArrayVar(&f.add, "add", nil, "extra file SRC:DST, DST absolute in the initramfs (repeatable)")
	fl.StringVar(&f.out, "out", "", "output file (required)")
	fl.StringVar(&f.epoch, "source-date-epoch", "", "modification time of all entries, seconds since 1970 (default: $SOURCE_DATE_EPOCH, else 0)")
	for _, name := range []string{"agent", "config", "out"} {
		_ = cmd.MarkFlagRequired(name) // the flags exist: error impossible
	}
	return cmd
}

// initramfsSpec turns the flags into a build spec, reporting every problem.
func initramfsSpec(f initramfsFlags, env Env) (initramfs.Spec, error) {
	spec := initramfs.Spec{
		Agent:      f.agent,
		Config:     f.config,
		CA:         f.ca,
		ModulesDir: f.modulesDir,
		Modules:    f.modules,
	}
	var errs []error
	if f.modulesDir != "" && len(f.modules) == 0 {
		spec.Modules = initramfs.DefaultModules()
	}
	if f.modulesDir == "" && len(f.modules) > 0 {
		errs = append(errs, fmt.Errorf("%w: --module needs --modules-dir", ErrUsage))
	}
	for _, a := range f.add {
		x, err := parseAdd(a)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		spec.Extra = append(spec.Extra, x)
	}
	mtime, err := sourceDateEpoch(f.epoch, env)
	if err != nil {
		errs = append(errs, err)
	}
	spec.Mtime = mtime
	return spec, errors.Join(errs...)
}

// sourceDateEpoch returns the --source-date-epoch flag's value, else
// $SOURCE_DATE_EPOCH's, else 0.
func sourceDateEpoch(flag string, env Env) (int64, error) {
	epoch, source := flag, "--source-date-epoch"
	if epoch == "" {
		epoch, source = env.getenv("SOURCE_DATE_EPOCH"), "SOURCE_DATE_EPOCH"
	}
	if epoch == "" {
		return 0, nil
	}
	v, err := strconv.ParseInt(epoch, 10, 64)
	if err != nil || v < 0 || v > 1<<32-1 {
		return 0, fmt.Errorf("%w: %s=%q: want seconds since 1970 in 0..4294967295", ErrUsage, source, epoch)
	}
	return v, nil
}

// parseAdd parses SRC:DST. DST is absolute, so the last ":/" separates them
// even when SRC holds a colon.
func parseAdd(s string) (initramfs.Extra, error) {
	i := strings.LastIndex(s, ":/")
	if i <= 0 {
		return initramfs.Extra{}, fmt.Errorf("%w: --add %q: want SRC:DST with DST absolute", ErrUsage, s)
	}
	return initramfs.Extra{Src: s[:i], Dst: s[i+1:]}, nil
}

func runInitramfs(stdout io.Writer, f initramfsFlags, env Env) error {
	spec, err := initramfsSpec(f, env)
	if err != nil {
		return err
	}
	res, err := initramfs.Assemble(spec)
	if err != nil {
		return fmt.Errorf("assembling initramfs: %w", err)
	}
	sum, size, err := writeAtomic(f.out, res.Archive.WriteGzip)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s (%d bytes, sha256 %x, mtime %d)\n", f.out, size, sum, spec.Mtime)
	if res.Modules != nil {
		names := make([]string, len(res.Modules.Load))
		for i, m := range res.Modules.Load {
			names[i] = m.Name
		}
		fmt.Fprintf(stdout, "modules (load order): %s\n", strings.Join(names, " "))
		if len(res.Modules.Builtin) > 0 {
			fmt.Fprintf(stdout, "built into the kernel (skipped): %s\n", strings.Join(res.Modules.Builtin, " "))
		}
	}
	return nil
}

// writeAtomic writes a new file at path through a temporary file in the same
// directory, synced and renamed into place, and returns its SHA-256 and size.
func writeAtomic(path string, write func(io.Writer) error) ([]byte, int64, error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return nil, 0, fmt.Errorf("creating output: %w", err)
	}
	done := false
	defer func() {
		if !done {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	h := sha256.New()
	cw := &countWriter{w: io.MultiWriter(tmp, h)}
	if err := write(cw); err != nil {
		return nil, 0, err
	}
	if err := tmp.Chmod(0o644); err != nil {
		return nil, 0, fmt.Errorf("writing output: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		return nil, 0, fmt.Errorf("writing output: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return nil, 0, fmt.Errorf("writing output: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return nil, 0, fmt.Errorf("renaming output into place: %w", err)
	}
	done = true
	return h.Sum(nil), cw.n, nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
