package loadgen

import (
	"testing"
)

// The parsers below read files of /proc, the verifier's answers and event
// logs; none may panic on any input.

func FuzzParseNetTCP(f *testing.F) {
	f.Add([]byte(tcpHeader + "   0: 0100007F:20FB 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0 100 0 0 10 0\n"))
	f.Add([]byte(tcpHeader + "   0: 00000000000000000000000000000000:2328 00000000000000000000000000000000:0000 0A 0 0 0 0 0 77\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		socks, err := parseNetTCP(b)
		if err != nil && socks != nil {
			t.Error("sockets with an error")
		}
	})
}

func FuzzParseVmRSS(f *testing.F) {
	f.Add([]byte("Name:\tx\nVmRSS:\t 1234 kB\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if rss, err := parseVmRSS(b); err == nil && rss < 0 {
			t.Errorf("negative RSS %d", rss)
		}
	})
}

func FuzzParseStatCPU(f *testing.F) {
	f.Add([]byte("1 (verifier) S 1 1 1 0 -1 0 0 0 0 0 150 50 0 0 20 0 1 0"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if d, err := parseStatCPU(b); err == nil && d < 0 {
			t.Errorf("negative CPU time %v", d)
		}
	})
}

func FuzzParseRelease(f *testing.F) {
	f.Add([]byte(`{"jwe":"a.b.c.d.e"}`), "application/json")
	f.Add([]byte("a.b.c.d.e"), "application/jose; charset=utf-8")
	f.Fuzz(func(t *testing.T, body []byte, ctype string) {
		if jwe, err := parseRelease(body, ctype); err == nil && len(jwe) == 0 {
			t.Error("empty JWE without an error")
		}
	})
}

func FuzzNewImage(f *testing.F) {
	f.Add(EventLog)
	f.Add(EventLog[:200])
	f.Fuzz(func(t *testing.T, log []byte) {
		img, err := NewImage(log)
		if err == nil && len(img.Banks) == 0 {
			t.Error("an image without banks")
		}
	})
}
