package cli

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// cloudModules returns the installed Debian cloud kernel's modules directory.
func cloudModules(t *testing.T) string {
	t.Helper()
	deps, _ := filepath.Glob("/lib/modules/*-cloud-amd64/modules.dep")
	if len(deps) == 0 {
		t.Fatal("no cloud kernel modules (install linux-image-cloud-amd64)")
	}
	slices.Sort(deps)
	return filepath.Dir(deps[0])
}

// run executes confidant-image with args and the given environment.
func run(t *testing.T, env map[string]string, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	root := NewRoot(Env{Stdout: &out, Stderr: &errOut, Getenv: func(k string) string { return env[k] }})
	root.SetArgs(args)
	err := root.Execute()
	return out.String() + errOut.String(), err
}

type inputs struct {
	dir, agent, config, hosts, out, modules string
}

func newInputs(t *testing.T) inputs {
	t.Helper()
	dir := t.TempDir()
	in := inputs{dir: dir, agent: "/bin/busybox", config: filepath.Join(dir, "agent.yaml"), hosts: filepath.Join(dir, "hosts"), out: filepath.Join(dir, "out", "initrd.img"), modules: cloudModules(t)}
	if err := os.WriteFile(in.config, []byte("verifier:\n  url: http://10.0.2.2:8080\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(in.hosts, []byte("10.0.2.2 verifier\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Dir(in.out), 0o755); err != nil {
		t.Fatal(err)
	}
	return in
}

func (in inputs) args(extra ...string) []string {
	return append([]string{"initramfs", "--agent", in.agent, "--config", in.config,
		"--modules-dir", in.modules, "--module", "dm-crypt", "--module", "virtio_net", "--module", "ext4",
		"--add", in.hosts + ":/etc/hosts", "--out", in.out}, extra...)
}

func TestInitramfsCommand(t *testing.T) {
	in := newInputs(t)
	out, err := run(t, map[string]string{"SOURCE_DATE_EPOCH": "1700000000"}, in.args()...)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, want := range []string{"wrote " + in.out, "sha256 ", "mtime 1700000000",
		"modules (load order): dm_mod dm_crypt virtio_ring virtio failover net_failover virtio_net",
		"built into the kernel (skipped): ext4"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	first, err := os.ReadFile(in.out)
	if err != nil {
		t.Fatal(err)
	}
	// GNU cpio reads what we wrote.
	list := exec.Command("sh", "-c", "gzip -dc < \"$1\" | cpio -it --quiet", "sh", in.out)
	names, err := list.CombinedOutput()
	if err != nil {
		t.Fatalf("cpio -it: %v\n%s", err, names)
	}
	for _, want := range []string{"init", "etc/confidant/agent.yaml", "etc/confidant/modules", "etc/hosts",
		"lib/modules/" + filepath.Base(cloudModules(t)) + "/kernel/drivers/md/dm-crypt.ko"} {
		if !slices.Contains(strings.Fields(string(names)), want) {
			t.Errorf("archive lacks %s", want)
		}
	}
	// No temporary file is left behind.
	if ents, _ := os.ReadDir(filepath.Dir(in.out)); len(ents) != 1 {
		t.Errorf("output directory holds %d entries, want 1", len(ents))
	}
	// Same inputs, same bytes; the flag overrides the environment.
	if out, err := run(t, nil, in.args("--source-date-epoch", "1700000000")...); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if second, _ := os.ReadFile(in.out); !bytes.Equal(first, second) {
		t.Error("second build differs")
	}
	if out, err := run(t, map[string]string{"SOURCE_DATE_EPOCH": "1700000000"}, in.args("--source-date-epoch", "5")...); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if third, _ := os.ReadFile(in.out); bytes.Equal(first, third) {
		t.Error("--source-date-epoch did not change the output")
	}
}

func TestInitramfsCommandErrors(t *testing.T) {
	in := newInputs(t)
	tests := map[string]struct {
		args    []string
		env     map[string]string
		wantErr error
		wantOut string
	}{
		"bad add":        {args: in.args("--add", "nocolon"), wantErr: ErrUsage},
		"relative dst":   {args: in.args("--add", in.hosts+":etc/x"), wantErr: ErrUsage},
		"bad epoch flag": {args: in.args("--source-date-epoch", "yesterday"), wantErr: ErrUsage},
		"bad epoch env":  {args: in.args(), env: map[string]string{"SOURCE_DATE_EPOCH": "-1"}, wantErr: ErrUsage},
		"module without dir": {
			args:    []string{"initramfs", "--agent", in.agent, "--config", in.config, "--module", "x", "--out", in.out},
			wantErr: ErrUsage,
		},
		"missing required": {args: []string{"initramfs", "--agent", in.agent}, wantOut: `required flag(s) "config", "out" not set`},
		"dynamic agent":    {args: append(in.args(), "--agent", "/bin/ls"), wantOut: "not a static ELF"},
		"unknown module":   {args: in.args("--module", "no_such_module"), wantOut: "unknown kernel module: no_such_module"},
		"stray argument":   {args: in.args("extra"), wantOut: "unknown command"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			out, err := run(t, tt.env, tt.args...)
			if err == nil {
				t.Fatalf("no error; output:\n%s", out)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("error = %v, want %v", err, tt.wantErr)
			}
			if !strings.Contains(out+err.Error(), tt.wantOut) {
				t.Errorf("output %q lacks %q", out+err.Error(), tt.wantOut)
			}
			if _, err := os.Stat(in.out); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("output file exists after a failed build: %v", err)
			}
			if ents, _ := os.ReadDir(filepath.Dir(in.out)); len(ents) != 0 {
				t.Errorf("output directory not empty after a failed build")
			}
		})
	}
}

func TestInitramfsHelp(t *testing.T) {
	out, err := run(t, nil, "initramfs", "--help")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Examples:", "confidant-image initramfs", "--modules-dir", "SOURCE_DATE_EPOCH", "/etc/confidant/agent.yaml"} {
		if !strings.Contains(out, want) {
			t.Errorf("help lacks %q", want)
		}
	}
}

func TestParseAdd(t *testing.T) {
	for in, want := range map[string][2]string{
		"a:/b":                      {"a", "/b"},
		"c:\\x:y:/bin":              {"c:\\x:y", "/bin"},
		"/bin/busybox:/bin/busybox": {"/bin/busybox", "/bin/busybox"},
	} {
		x, err := parseAdd(in)
		if err != nil || x.Src != want[0] || x.Dst != want[1] {
			t.Errorf("parseAdd(%q) = %+v, %v", in, x, err)
		}
	}
	for _, bad := range []string{"", "a", ":/b", "a:b"} {
		if _, err := parseAdd(bad); !errors.Is(err, ErrUsage) {
			t.Errorf("parseAdd(%q): error %v, want ErrUsage", bad, err)
		}
	}
}
