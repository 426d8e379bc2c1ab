package loadgen

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// TestReportEscaped: error codes and examples come from the verifier's
// answers; the text and JSON reports print them with no control byte, and
// the JSON decodes to the same report.
func TestReportEscaped(t *testing.T) {
	code := "\x1b]0;pwned\x07"
	rep := &Report{
		TEE: "sim-sev-snp", Concurrency: 1, Flows: 1, Failures: 1,
		Steps:         map[string]*StepReport{StepAttest: {Latency: Latency{Count: 1}, Errors: map[string]int{code: 1}}},
		Errors:        map[string]int{code: 1},
		ErrorExamples: map[string]string{code: "verifier answered 400 \u009b2J\nforged: " + strings.Repeat("\x1b[2J", 200)},
		RSS:           &RSSStats{Error: "no process\r\u202e"},
	}
	var text, js strings.Builder
	if err := WriteText(&text, rep); err != nil {
		t.Fatal(err)
	}
	if err := WriteJSON(&js, rep); err != nil {
		t.Fatal(err)
	}
	for name, out := range map[string]string{"text": text.String(), "json": js.String()} {
		for i := 0; i < len(out); i++ {
			if c := out[i]; (c < 0x20 || c > 0x7e) && c != '\n' {
				t.Fatalf("%s report holds the raw byte %#x at %d:\n%q", name, c, i, out)
			}
		}
	}
	for _, want := range []string{`\x1b]0;pwned\x07`, `e.g. verifier answered 400 \u009b2J\nforged: \x1b[2J`, `[no process\r\u202e]`} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text report lacks %s:\n%s", want, text.String())
		}
	}
	var back Report
	if err := json.Unmarshal([]byte(js.String()), &back); err != nil || !reflect.DeepEqual(back.ErrorExamples, rep.ErrorExamples) ||
		back.RSS.Error != rep.RSS.Error {
		t.Fatalf("the JSON report does not decode to the report: %v", err)
	}
}
