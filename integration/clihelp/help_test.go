package clihelp

import (
	"bufio"
	"bytes"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// root is the repository, from this package's directory.
const root = "../.."

// programs lists the main packages under */cmd/* (integration/cmd/*
// included).
func programs(t *testing.T) []string {
	t.Helper()
	var dirs []string
	for _, pattern := range []string{"*/cmd/*"} {
		matches, err := filepath.Glob(filepath.Join(root, pattern))
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range matches {
			if main, _ := filepath.Glob(filepath.Join(m, "main.go")); len(main) == 1 {
				dirs = append(dirs, "./"+strings.TrimPrefix(filepath.ToSlash(m), root+"/"))
			}
		}
	}
	if len(dirs) < 5 {
		t.Fatalf("found only %v", dirs)
	}
	return dirs
}

// subcommands reads the "Available Commands:" section of a help text (as
// cobra prints it, and confidant-agent too).
func subcommands(help []byte) []string {
	var out []string
	in := false
	sc := bufio.NewScanner(bytes.NewReader(help))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.TrimSpace(line) == "Available Commands:":
			in = true
		case in && strings.TrimSpace(line) == "":
			in = false
		case in && strings.HasPrefix(line, "  "):
			out = append(out, strings.Fields(line)[0])
		}
	}
	return out
}

// TestHelp builds every program and runs --help on it and, recursively, on
// each of its subcommands: each must exit 0 and print something.
func TestHelp(t *testing.T) {
	bin := t.TempDir()
	dirs := programs(t)
	build := exec.Command("go", append([]string{"build", "-o", bin + "/"}, dirs...)...)
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build %v: %v\n%s", dirs, err, out)
	}
	for _, d := range dirs {
		prog := filepath.Join(bin, filepath.Base(d))
		var walk func(path []string, depth int)
		walk = func(path []string, depth int) {
			name := strings.Join(append([]string{filepath.Base(d)}, path...), " ")
			cmd := exec.Command(prog, append(path, "--help")...)
			cmd.Dir = t.TempDir()
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			var exit *exec.ExitError
			switch {
			case errors.As(err, &exit):
				t.Errorf("%s --help: exit status %d\n%s%s", name, exit.ExitCode(), stdout.Bytes(), stderr.Bytes())
			case err != nil:
				t.Errorf("%s --help: %v", name, err)
			case len(bytes.TrimSpace(stdout.Bytes()))+len(bytes.TrimSpace(stderr.Bytes())) == 0:
				t.Errorf("%s --help: no output", name)
			default:
				t.Logf("%s --help: ok", name)
			}
			if depth == 3 {
				return
			}
			for _, sub := range subcommands(stdout.Bytes()) {
				walk(append(append([]string(nil), path...), sub), depth+1)
			}
		}
		walk(nil, 0)
	}
}

// TestSubcommands checks the parser of the help text.
func TestSubcommands(t *testing.T) {
	help := "Usage:\n  x [command]\n\nAvailable Commands:\n  build       Build it\n  help        Help\n\nFlags:\n  -h, --help\n"
	if got := subcommands([]byte(help)); strings.Join(got, ",") != "build,help" {
		t.Fatalf("subcommands %v", got)
	}
	if got := subcommands([]byte("Usage of x:\n  -v\tverbose\n")); len(got) != 0 {
		t.Fatalf("subcommands of a flag-only program: %v", got)
	}
}
