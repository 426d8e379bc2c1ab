package main

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeTables stands in for the DM_TABLE_STATUS ioctl, which needs a kernel
// with device-mapper (the guest has one, this host may not).
type fakeTables map[string]fakeTable

type fakeTable struct {
	targets []rawTarget
	err     error
}

func (f fakeTables) Table(major, minor uint32) ([]rawTarget, error) {
	t, ok := f[fmt.Sprintf("%d:%d", major, minor)]
	if !ok {
		return nil, fmt.Errorf("no such device %d:%d", major, minor)
	}
	return t.targets, t.err
}

var tempKey = strings.Repeat("fedcba9876543210", 4)

type fakeDM struct {
	dev, majMin, name, uuid string
	slaves                  []string
}

// scenario is a fake guest: a root with proc/self/mountinfo, sys/block and
// the temp mount directory, and the tables the ioctl would return.
type scenario struct {
	mountinfo  string
	dms        []fakeDM
	tables     fakeTables
	token      string // "" for none
	noTempDir  bool
	noMountDir bool   // no mountinfo at all
	eventLog   []byte // nil: no securityfs event log
}

func goodScenario() scenario {
	return scenario{
		mountinfo: "22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/mapper/confidant-root rw\n" +
			"23 22 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:2 - proc proc rw\n" +
			"26 22 254:1 / /mnt/resource rw,nosuid,nodev,relatime shared:5 - ext4 /dev/mapper/confidant-temp rw\n",
		dms: []fakeDM{
			{"dm-0", "254:0", "confidant-root", "CRYPT-LUKS2-3f2a9c1e6d4b4e8a9b1c7a5d2e8f0c13-confidant-root", []string{"vda"}},
			{"dm-1", "254:1", "confidant-temp", "CRYPT-LUKS2-5b7e1d2c3a4f4b6e8d9c0a1b2c3d4e5f-confidant-temp", []string{"vdb"}},
		},
		tables: fakeTables{
			"254:0": {targets: []rawTarget{{Length: 98304, Type: "crypt", Params: "aes-xts-plain64 " + testKey + " 0 252:0 32768 1 sector_size:4096"}}},
			"254:1": {targets: []rawTarget{{Length: 65536, Type: "crypt", Params: "aes-xts-plain64 " + tempKey + " 0 252:16 32768 1 sector_size:4096"}}},
		},
		token: jws(sampleClaims),
	}
}

func (s scenario) build(t *testing.T) *checker {
	t.Helper()
	root := t.TempDir()
	if !s.noMountDir {
		mustWrite(t, filepath.Join(root, "proc", "self", "mountinfo"), s.mountinfo)
	}
	for _, d := range s.dms {
		writeDMSysfs(t, root, d.dev, d.majMin, d.name, d.uuid, d.slaves...)
	}
	if !s.noTempDir {
		if err := os.MkdirAll(filepath.Join(root, "mnt", "resource"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if s.token != "" {
		mustWrite(t, filepath.Join(root, "run", "confidant", "token.jwt"), s.token)
	}
	if s.eventLog != nil {
		mustWrite(t, filepath.Join(root, eventLogPath), string(s.eventLog))
	}
	return &checker{root: root, tempMount: "/mnt/resource", tokenPath: "/run/confidant/token.jwt", tables: s.tables}
}

// runChecks runs the checker and returns the reports by check name, after
// making sure every line is a prefixed JSON object, in order, and that no
// key appears anywhere.
func runChecks(t *testing.T, c *checker) (bool, map[string]map[string]any, string) {
	t.Helper()
	var out bytes.Buffer
	ok, err := c.run(&out)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	text := out.String()
	for _, key := range []string{testKey, tempKey} {
		if strings.Contains(strings.ToLower(text), key) {
			t.Fatalf("output shows a key:\n%s", text)
		}
	}
	reports := map[string]map[string]any{}
	var order []string
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		line, found := strings.CutPrefix(sc.Text(), linePrefix)
		if !found {
			t.Fatalf("line without %q prefix: %q", linePrefix, sc.Text())
		}
		var r map[string]any
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("line is not JSON: %q: %v", line, err)
		}
		name, _ := r["check"].(string)
		reports[name] = r
		order = append(order, name)
	}
	if got := strings.Join(order, ","); got != "root,temp,dm,token,eventlog,summary" {
		t.Fatalf("reports in order %s", got)
	}
	if reports["summary"]["ok"] != ok {
		t.Fatalf("summary ok %v, run returned %v", reports["summary"]["ok"], ok)
	}
	return ok, reports, text
}

func TestRunGood(t *testing.T) {
	c := goodScenario().build(t)
	ok, r, text := runChecks(t, c)
	if !ok {
		t.Fatalf("good system not ok:\n%s", text)
	}
	root, temp := r["root"], r["temp"]
	if root["dm_crypt"] != true || root["device"] != "dm-0" || root["fstype"] != "ext4" ||
		root["source"] != "/dev/mapper/confidant-root" || root["options"] != "rw,relatime" {
		t.Errorf("root report: %v", root)
	}
	dm, _ := root["dm"].(map[string]any)
	if dm["name"] != "confidant-root" || dm["cipher"] != "aes-xts-plain64" || dm["key_bytes"] != 64.0 ||
		dm["sector_size"] != 4096.0 || !strings.HasPrefix(dm["uuid"].(string), "CRYPT-LUKS2-") {
		t.Errorf("root dm: %v", dm)
	}
	if temp["dm_crypt"] != true || temp["probe"] != "ok" || temp["read_only"] != false ||
		temp["device_bytes"] != 98304.0*512 || temp["size_bytes"] == nil {
		t.Errorf("temp report: %v", temp)
	}
	devs, _ := r["dm"]["devices"].([]any)
	if len(devs) != 2 {
		t.Fatalf("dm devices: %v", r["dm"])
	}
	tg := devs[0].(map[string]any)["targets"].([]any)[0].(map[string]any)
	if tg["type"] != "crypt" || tg["key"] != redacted ||
		tg["params"] != "aes-xts-plain64 <redacted> 0 252:0 32768 1 sector_size:4096" {
		t.Errorf("dm target: %v", tg)
	}
	if !strings.Contains(text, `"key":"<redacted>"`) {
		t.Errorf("redaction marker escaped in output:\n%s", text)
	}
	claims, _ := r["token"]["claims"].(map[string]any)
	if r["token"]["present"] != true || claims["status"] != "affirming" || claims["sub"] != "guest-1" ||
		claims["eat_nonce"] != nil || claims["runtime"] != nil {
		t.Errorf("token report: %v", r["token"])
	}
	if entries, err := os.ReadDir(filepath.Join(c.root, "mnt", "resource")); err != nil || len(entries) != 0 {
		t.Errorf("probe directory after run: %v, %v", entries, err)
	}
}

func TestRunProblems(t *testing.T) {
	tests := map[string]struct {
		change      func(s *scenario)
		wantOK      bool
		wantProblem string
	}{
		"no token is fine": {
			change: func(s *scenario) { s.token = "" },
			wantOK: true,
		},
		"malformed token is reported, not a failure": {
			change: func(s *scenario) { s.token = "a.b" },
			wantOK: true,
		},
		"root linear": {
			change: func(s *scenario) {
				s.tables["254:0"] = fakeTable{targets: []rawTarget{{Length: 8, Type: "linear", Params: "252:0 0"}}}
			},
			wantProblem: "root: dm device confidant-root is not dm-crypt",
		},
		"root crypt uuid on linear table": {
			change: func(s *scenario) {
				s.tables["254:0"] = fakeTable{targets: []rawTarget{{Length: 8, Type: "linear", Params: "252:0 0"}}}
				s.dms[0].uuid = "CRYPT-LUKS2-00-confidant-root"
			},
			wantProblem: "root: dm device confidant-root is not dm-crypt",
		},
		"root null cipher": {
			change: func(s *scenario) {
				s.tables["254:0"] = fakeTable{targets: []rawTarget{{Length: 8, Type: "crypt", Params: "cipher_null-ecb - 0 252:0 0"}}}
			},
			wantProblem: "root: dm device confidant-root is not dm-crypt",
		},
		"root table unreadable": {
			change:      func(s *scenario) { s.tables["254:0"] = fakeTable{err: errors.New("ioctl refused")} },
			wantProblem: "root: dm device confidant-root is not dm-crypt (table unreadable: ioctl refused)",
		},
		"root not dm": {
			change: func(s *scenario) {
				s.mountinfo = strings.Replace(s.mountinfo, "254:0 / / rw,relatime shared:1 - ext4 /dev/mapper/confidant-root",
					"252:0 / / rw,relatime shared:1 - ext4 /dev/vda", 1)
			},
			wantProblem: "root: /dev/vda (252:0) is not a device-mapper device",
		},
		"no mountinfo": {
			change:      func(s *scenario) { s.noMountDir = true },
			wantProblem: "opening mountinfo",
		},
		"malformed mountinfo": {
			change:      func(s *scenario) { s.mountinfo += "garbage\n" },
			wantProblem: "malformed mountinfo line",
		},
		"temp not mounted": {
			change: func(s *scenario) {
				s.mountinfo = strings.Join(strings.SplitAfter(s.mountinfo, "\n")[:2], "")
			},
			wantProblem: "temp: nothing mounted at /mnt/resource",
		},
		"temp read-only": {
			change: func(s *scenario) {
				s.mountinfo = strings.Replace(s.mountinfo, "/mnt/resource rw,", "/mnt/resource ro,", 1)
			},
			wantProblem: "temp: /mnt/resource is mounted read-only",
		},
		"temp not dm": {
			change: func(s *scenario) {
				s.mountinfo = strings.Replace(s.mountinfo, "254:1 / /mnt/resource", "252:16 / /mnt/resource", 1)
			},
			wantProblem: "temp: /dev/mapper/confidant-temp (252:16) is not a device-mapper device",
		},
		"temp linear": {
			change: func(s *scenario) {
				s.tables["254:1"] = fakeTable{targets: []rawTarget{{Length: 8, Type: "linear", Params: "252:16 0"}}}
			},
			wantProblem: "temp: dm device confidant-temp is not dm-crypt",
		},
		"temp not writable": {
			change:      func(s *scenario) { s.noTempDir = true },
			wantProblem: "temp: write probe: creating probe file",
		},
		"temp is the root device": {
			change: func(s *scenario) {
				s.mountinfo = strings.Replace(s.mountinfo, "254:1 / /mnt/resource", "254:0 /var/tmp /mnt/resource", 1)
			},
			wantProblem: "temp: /mnt/resource is the root device 254:0",
		},
		"key material in a dm name is withheld": {
			change: func(s *scenario) {
				s.dms = append(s.dms, fakeDM{"dm-2", "254:2", "leak-" + tempKey, "", nil})
				s.tables["254:2"] = fakeTable{targets: []rawTarget{{Length: 8, Type: "zero"}}}
			},
			wantProblem: "dm report: output contained key material",
		},
		"key material in linear params is withheld": {
			change: func(s *scenario) {
				s.dms = append(s.dms, fakeDM{"dm-2", "254:2", "odd", "", nil})
				s.tables["254:2"] = fakeTable{targets: []rawTarget{{Length: 8, Type: "linear", Params: "252:0 " + testKey}}}
			},
			wantProblem: "dm report: output contained key material",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			s := goodScenario()
			tc.change(&s)
			ok, r, text := runChecks(t, s.build(t))
			if ok != tc.wantOK {
				t.Fatalf("ok = %v, want %v:\n%s", ok, tc.wantOK, text)
			}
			problems, _ := r["summary"]["problems"].([]any)
			if tc.wantProblem == "" {
				if len(problems) != 0 {
					t.Errorf("problems %v, want none", problems)
				}
				return
			}
			for _, p := range problems {
				if strings.Contains(p.(string), tc.wantProblem) {
					return
				}
			}
			t.Errorf("problems %q, want one containing %q", problems, tc.wantProblem)
		})
	}
}

func TestEmitterWithholdsKeys(t *testing.T) {
	var out bytes.Buffer
	e := &emitter{w: &out, secrets: []string{"-", testKey}}
	if err := e.emit("x", map[string]string{"check": "x", "v": "short - dash"}); err != nil {
		t.Fatalf("emit of a clean line: %v", err)
	}
	err := e.emit("y", map[string]string{"check": "y", "v": strings.ToUpper(testKey)})
	if !errors.Is(err, errKeyInOutput) {
		t.Fatalf("error %v, want %v", err, errKeyInOutput)
	}
	want := linePrefix + `{"check":"x","v":"short - dash"}` + "\n" +
		linePrefix + `{"check":"y","error":"report withheld: it contained key material"}` + "\n"
	if out.String() != want {
		t.Errorf("output:\n%s\nwant:\n%s", out.String(), want)
	}
}

func TestEventLogReport(t *testing.T) {
	s := goodScenario()
	s.eventLog = []byte("\x00\x01spec id event\xff")
	ok, r, _ := runChecks(t, s.build(t))
	if !ok {
		t.Fatalf("not ok: %v", r["summary"])
	}
	got, _ := base64.StdEncoding.DecodeString(fmt.Sprint(r["eventlog"]["log"]))
	if !bytes.Equal(got, s.eventLog) || r["eventlog"]["size"] != float64(len(s.eventLog)) {
		t.Errorf("eventlog report = %v", r["eventlog"])
	}

	// No log (a BIOS boot without securityfs) is reported, not a failure.
	ok, r, _ = runChecks(t, goodScenario().build(t))
	if !ok || r["eventlog"]["log"] != nil || !strings.Contains(fmt.Sprint(r["eventlog"]["error"]), "opening the event log") {
		t.Errorf("no log: ok %v, report %v", ok, r["eventlog"])
	}
}
