package main

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

// A mountinfo as the demo OS shows it after the agent's switch_root.
const sampleMountinfo = `22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/mapper/confidant-root rw
23 22 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:2 - proc proc rw
24 22 0:20 / /sys rw,nosuid,nodev,noexec,relatime shared:3 - sysfs sysfs rw
25 22 0:5 / /dev rw,nosuid,relatime shared:4 - devtmpfs devtmpfs rw,size=4096k,nr_inodes=1024,mode=755
26 22 254:1 / /mnt/resource rw,nosuid,nodev,relatime shared:5 - ext4 /dev/mapper/confidant-temp rw
27 22 0:25 / /mnt/with\040space rw - tmpfs tmp\134fs rw
`

func TestParseMountinfo(t *testing.T) {
	mounts, err := parseMountinfo(strings.NewReader(sampleMountinfo))
	if err != nil {
		t.Fatalf("parseMountinfo: %v", err)
	}
	if len(mounts) != 6 {
		t.Fatalf("got %d mounts, want 6", len(mounts))
	}
	want := mountEntry{
		ID: 26, Parent: 22, Major: 254, Minor: 1, Root: "/", Point: "/mnt/resource",
		Options:  []string{"rw", "nosuid", "nodev", "relatime"},
		Optional: []string{"shared:5"},
		FSType:   "ext4", Source: "/dev/mapper/confidant-temp",
		SuperOptions: []string{"rw"},
	}
	if !reflect.DeepEqual(mounts[4], want) {
		t.Errorf("temp mount:\n got %+v\nwant %+v", mounts[4], want)
	}
	if got := mounts[5]; got.Point != "/mnt/with space" || got.Source != `tmp\fs` || len(got.Optional) != 0 {
		t.Errorf("escaped mount: point %q source %q optional %q", got.Point, got.Source, got.Optional)
	}
}

func TestParseMountinfoErrors(t *testing.T) {
	tests := map[string]struct {
		line    string
		wantErr error
	}{
		"no separator":          {"22 1 254:0 / / rw shared:1 ext4 /dev/vda rw", errMalformedMountinfo},
		"short after separator": {"22 1 254:0 / / rw - ext4 /dev/vda", errMalformedMountinfo},
		"long after separator":  {"22 1 254:0 / / rw - ext4 /dev/vda rw extra", errMalformedMountinfo},
		"too few fields":        {"22 1 254:0 / - ext4 /dev/vda rw", errMalformedMountinfo},
		"bad id":                {"x 1 254:0 / / rw - ext4 /dev/vda rw", errMalformedMountinfo},
		"bad parent":            {"22 y 254:0 / / rw - ext4 /dev/vda rw", errMalformedMountinfo},
		"bad device":            {"22 1 254 / / rw - ext4 /dev/vda rw", errMalformedMountinfo},
		"bad major":             {"22 1 a:0 / / rw - ext4 /dev/vda rw", errMalformedMountinfo},
		"bad minor":             {"22 1 254:-1 / / rw - ext4 /dev/vda rw", errMalformedMountinfo},
		"truncated escape":      {`22 1 254:0 / /a\04 rw - ext4 /dev/vda rw`, errMalformedMountinfo},
		"bad escape":            {`22 1 254:0 / /a\999 rw - ext4 /dev/vda rw`, errMalformedMountinfo},
		"bad source escape":     {`22 1 254:0 / / rw - ext4 /dev/vd\a rw`, errMalformedMountinfo},
		"line too long":         {"22 1 254:0 / /" + strings.Repeat("a", maxMountinfoLine) + " rw - ext4 /dev/vda rw", nil},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := parseMountinfo(strings.NewReader(sampleMountinfo + tc.line + "\n"))
			if err == nil {
				t.Fatal("parseMountinfo accepted a malformed line")
			}
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Errorf("error %v, want %v", err, tc.wantErr)
			}
		})
	}
}

func TestFindMount(t *testing.T) {
	mounts, err := parseMountinfo(strings.NewReader(sampleMountinfo +
		"28 26 254:2 / /mnt/resource ro,relatime - ext4 /dev/mapper/over ro\n"))
	if err != nil {
		t.Fatalf("parseMountinfo: %v", err)
	}
	tests := map[string]struct {
		point      string
		wantOK     bool
		wantSource string
		wantRO     bool
	}{
		"root":         {point: "/", wantOK: true, wantSource: "/dev/mapper/confidant-root"},
		"top of stack": {point: "/mnt/resource", wantOK: true, wantSource: "/dev/mapper/over", wantRO: true},
		"absent":       {point: "/mnt/nothing"},
		"not a prefix": {point: "/mnt"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			m, ok := findMount(mounts, tc.point)
			if ok != tc.wantOK {
				t.Fatalf("found %v, want %v", ok, tc.wantOK)
			}
			if m.Source != tc.wantSource || m.readOnly() != tc.wantRO {
				t.Errorf("source %q ro %v, want %q %v", m.Source, m.readOnly(), tc.wantSource, tc.wantRO)
			}
		})
	}
}

func TestReadOnly(t *testing.T) {
	tests := map[string]struct {
		m    mountEntry
		want bool
	}{
		"rw":                  {mountEntry{Options: []string{"rw"}, SuperOptions: []string{"rw"}}, false},
		"mount ro":            {mountEntry{Options: []string{"ro", "relatime"}, SuperOptions: []string{"rw"}}, true},
		"superblock ro":       {mountEntry{Options: []string{"rw"}, SuperOptions: []string{"ro", "errors=remount-ro"}}, true},
		"errors=remount-ro":   {mountEntry{Options: []string{"rw"}, SuperOptions: []string{"rw", "errors=remount-ro"}}, false},
		"ro as option suffix": {mountEntry{Options: []string{"rw", "noro"}, SuperOptions: []string{"rw"}}, false},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := tc.m.readOnly(); got != tc.want {
				t.Errorf("readOnly = %v, want %v", got, tc.want)
			}
		})
	}
}

func FuzzParseMountinfo(f *testing.F) {
	f.Add(sampleMountinfo)
	f.Add(`1 2 3:4 \ \0 - a b c`)
	f.Add("1 2 3:4 / / rw - - - -\n")
	f.Fuzz(func(t *testing.T, s string) {
		mounts, err := parseMountinfo(strings.NewReader(s))
		if err != nil {
			return
		}
		for _, m := range mounts {
			_, _ = findMount(mounts, m.Point)
			_ = m.readOnly()
		}
	})
}
