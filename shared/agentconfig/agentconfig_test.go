package agentconfig

import (
	"bytes"
	"reflect"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{
		"0": 0, "4096": 4096, "1K": 1 << 10, "1k": 1 << 10, "512M": 512 << 20, "512MiB": 512 << 20, "512MB": 512 << 20,
		"2G": 2 << 30, "2 GiB": 2 << 30, "1T": 1 << 40, "7B": 7, " 8 ": 8,
	} {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "M", "-1", "1.5G", "1P", "1iB", "1 2", "0x10", "99999999999999999999", "1048577T", "1GG"} {
		if got, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) = %d, want an error", in, got)
		}
	}
}

func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"512MiB", "1T", "-1", "99999999999999999999K"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseSize(s)
		if err == nil && (n < 0 || n > 1<<60) {
			t.Fatalf("ParseSize(%q) = %d", s, n)
		}
	})
}

// TestWriterKeys: a writer's File carries the required keys always and the
// optional ones only when set, so the reader's defaults apply to the rest;
// and what is written decodes back strictly to the same File.
func TestWriterKeys(t *testing.T) {
	tests := map[string]struct {
		f    File
		want string
	}{
		"required only": {
			f:    File{Verifier: Verifier{URL: "https://v"}, KeyName: "os-disk", OSDisk: OSDisk{LUKSUUID: "u"}, TEE: string(TEESim)},
			want: "verifier:\n  url: https://v\nkey_name: os-disk\nos_disk:\n  luks_uuid: u\ntee: sim\n",
		},
		"optional set": {
			f: File{
				Verifier: Verifier{URL: "http://v", AllowPlainHTTP: true}, KeyName: "k", OSDisk: OSDisk{LUKSUUID: "u"},
				TempDisk: TempDisk{Device: "/dev/vdb", SwapSize: 1 << 20}, TEE: string(TEEAuto),
				Network: Network{Address: "10.0.2.15/24"}, RetryBudget: time.Minute, OnFailure: string(Reboot),
			},
			want: "verifier:\n  url: http://v\n  allow_plain_http: true\nkey_name: k\nos_disk:\n  luks_uuid: u\n" +
				"temp_disk:\n  device: /dev/vdb\n  swap_size: 1048576\ntee: auto\nnetwork:\n  address: 10.0.2.15/24\n" +
				"retry_budget: 1m0s\non_failure: reboot\n",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			var b bytes.Buffer
			enc := yaml.NewEncoder(&b)
			enc.SetIndent(2)
			if err := enc.Encode(&tc.f); err != nil {
				t.Fatal(err)
			}
			if got := b.String(); got != tc.want {
				t.Fatalf("written:\n%s\nwant:\n%s", got, tc.want)
			}
			var back File
			dec := yaml.NewDecoder(&b)
			dec.KnownFields(true)
			if err := dec.Decode(&back); err != nil {
				t.Fatalf("decoding what was written: %v", err)
			}
			if !reflect.DeepEqual(back, tc.f) {
				t.Errorf("decoded %+v, wrote %+v", back, tc.f)
			}
		})
	}
}

func TestEnums(t *testing.T) {
	for _, tee := range []TEE{TEEAuto, TEEConfigfsTSM, TEESEVGuest, TEETDXGuest, TEESim} {
		if !tee.Valid() {
			t.Errorf("%s not valid", tee)
		}
	}
	for _, tee := range []TEE{"", "Auto", "snp"} {
		if tee.Valid() {
			t.Errorf("%q valid", tee)
		}
	}
	if !PowerOff.Valid() || !Reboot.Valid() || OnFailure("halt").Valid() || OnFailure("").Valid() {
		t.Error("OnFailure.Valid: want poweroff and reboot only")
	}
}
