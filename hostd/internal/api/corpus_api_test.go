package api

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/confidant-cvm/confidant/shared/tee/snp/sim"
)

// bodyCase posts the good spec, encoded and then changed by edit, as raw
// JSON text; it must be refused as an invalid spec with reason.
func bodyCase(name string, edit func(c *hostdCorpus, body string) string, reason string) hostdCase {
	return hostdCase{group: specGroup, name: name,
		send: func(t *testing.T, c *hostdCorpus) hostdResponse {
			b, err := json.Marshal(c.spec("victim"))
			if err != nil {
				t.Fatal(err)
			}
			return c.raw(t, http.MethodPost, "/v1/guests", "application/json", strings.NewReader(edit(c, string(b))))
		},
		status: http.StatusBadRequest, code: "invalid_spec", reason: reason}
}

// after inserts text after the good spec's opening brace.
func after(text string) func(*hostdCorpus, string) string {
	return func(_ *hostdCorpus, body string) string { return "{" + text + "," + body[1:] }
}

// swapCase replaces a file of guest "swapped" after its create, through
// swap, and starts it: the start must fail on the file as opened (500,
// since no sentinel stands for it), never wait on it or read hostd's keys.
func swapCase(name string, swap func(c *hostdCorpus, dir string) error, reason string) hostdCase {
	return hostdCase{group: specGroup, name: name,
		send: func(t *testing.T, c *hostdCorpus) hostdResponse {
			c.restoreSwapped(t)
			t.Cleanup(func() { c.restoreSwapped(t) })
			if err := swap(c, c.out); err != nil {
				t.Fatal(err)
			}
			return c.raw(t, http.MethodPost, "/v1/guests/swapped/start", "", nil)
		},
		status: http.StatusInternalServerError, code: "internal", reason: reason}
}

func swapCases() []hostdCase {
	return []hostdCase{
		swapCase("kernel swapped for a FIFO after create", func(_ *hostdCorpus, dir string) error {
			os.Remove(filepath.Join(dir, "swap-vmlinuz"))
			return syscall.Mkfifo(filepath.Join(dir, "swap-vmlinuz"), 0o600)
		}, "reading image.kernel: "),
		swapCase("initrd swapped for a directory after create", func(_ *hostdCorpus, dir string) error {
			os.Remove(filepath.Join(dir, "swap-initrd"))
			return os.Mkdir(filepath.Join(dir, "swap-initrd"), 0o700)
		}, "reading image.initrd: "),
		swapCase("kernel swapped for a link to the ARK key", func(c *hostdCorpus, dir string) error {
			os.Remove(filepath.Join(dir, "swap-vmlinuz"))
			return os.Symlink(filepath.Join(c.stateDir, "sim-sp", sim.ARKKeyFile), filepath.Join(dir, "swap-vmlinuz"))
		}, "reading image.kernel: path resolves into hostd's state directory"),
	}
}

func encodingCases() []hostdCase {
	post := func(name, body, reason string) hostdCase {
		return rawCase(specGroup, name, http.MethodPost, "/v1/guests", "application/json", body, http.StatusBadRequest, "invalid_spec", reason)
	}
	const dup = "duplicate key"
	return []hostdCase{
		bodyCase("unknown top-level field", after(`"privileged":true`), `unknown field "privileged"`),
		bodyCase("unknown image field", func(_ *hostdCorpus, b string) string {
			return strings.Replace(b, `"image":{`, `"image":{"append":"init=/bin/sh",`, 1)
		}, `unknown field "append"`),
		bodyCase("unknown snp field", after(`"snp":{"vmpl":0}`), `unknown field "vmpl"`),
		bodyCase("unknown field with ESC", after(`"\u001b[2Jx":1`), `unknown field "\x1b[2Jx"`),
		bodyCase("YAML-style field name", after(`"temp-disk-size":"1GiB"`), `unknown field "temp-disk-size"`),
		bodyCase("duplicate name", after(`"name":"shadow"`), dup),
		bodyCase("duplicate tee, last differs", func(_ *hostdCorpus, b string) string {
			return strings.TrimSuffix(b, "}") + `,"tee":"sev-snp"}`
		}, dup),
		bodyCase("duplicate nested kernel", func(_ *hostdCorpus, b string) string {
			return strings.Replace(b, `"image":{`, `"image":{"kernel":"/boot/vmlinuz",`, 1)
		}, dup),
		bodyCase("duplicate name differing in case", after(`"NAME":"shadow"`), dup),
		bodyCase("duplicate kernel with a Kelvin sign", func(_ *hostdCorpus, b string) string {
			return strings.Replace(b, `"image":{`, `"image":{"\u212aernel":"/boot/vmlinuz",`, 1)
		}, dup),
		bodyCase("trailing object", func(_ *hostdCorpus, b string) string { return b + `{"name":"second"}` }, "trailing data"),
		bodyCase("truncated", func(_ *hostdCorpus, b string) string { return b[:len(b)/2] }, "unexpected EOF"),
		bodyCase("invalid UTF-8 in the name", func(_ *hostdCorpus, b string) string {
			return strings.Replace(b, `"victim"`, "\"vic\xfftim\"", 1)
		}, "want 1 to 32 of [a-z0-9-]"),
		post("YAML instead of JSON", "name: victim\ntee: sim\n", "decoding JSON"),
		post("empty body", "", "decoding JSON: EOF"),
		several(post("JSON null", "null", `name "": want`)),
		post("JSON array", `[{"name":"victim"}]`, "cannot unmarshal array"),
		post("JSON string", `"victim"`, "cannot unmarshal string"),
		post("deep nesting", `{"image":`+strings.Repeat("[", 20000)+strings.Repeat("]", 20000)+`}`, "exceeded max depth|cannot unmarshal array"),
		rawCase(specGroup, "body over 64 KiB", http.MethodPost, "/v1/guests", "application/json",
			`{"name":"victim","image":{"cmdline":"`+strings.Repeat("a", maxBody)+`"}}`, http.StatusBadRequest, "bad_request", "request body too large"),
		rawCase(specGroup, "body of whitespace over 64 KiB", http.MethodPost, "/v1/guests", "application/json",
			strings.Repeat(" ", maxBody+1)+"{}", http.StatusBadRequest, "bad_request", "request body too large"),
	}
}

func apiCases() []hostdCase {
	notFound := func(name, method, path string) hostdCase {
		return rawCase(apiGroup, name, method, path, "", "", http.StatusNotFound, "not_found", "not found")
	}
	notAllowed := func(name, method, path string) hostdCase {
		return rawCase(apiGroup, name, method, path, "application/json", "{}", http.StatusMethodNotAllowed, "method_not_allowed", "method "+method+" not allowed")
	}
	mediaType := func(name, ctype string) hostdCase {
		return hostdCase{group: apiGroup, name: name,
			send: func(t *testing.T, c *hostdCorpus) hostdResponse {
				b, err := json.Marshal(c.spec("victim"))
				if err != nil {
					t.Fatal(err)
				}
				return c.raw(t, http.MethodPost, "/v1/guests", ctype, strings.NewReader(string(b)))
			},
			status: http.StatusUnsupportedMediaType, code: "unsupported_media_type", reason: "want application/json"}
	}
	again := func(name string) hostdCase {
		return hostdCase{group: apiGroup, name: "create " + name + " twice",
			send:   func(t *testing.T, c *hostdCorpus) hostdResponse { return c.create(t, c.spec(name)) },
			status: http.StatusConflict, code: "exists", reason: `guest already exists: "` + name + `"`}
	}
	return []hostdCase{
		again("base"),
		again("base-explicit"),
		notAllowed("PUT on the guest list", http.MethodPut, "/v1/guests"),
		notAllowed("DELETE on the guest list", http.MethodDelete, "/v1/guests"),
		notAllowed("PATCH a guest", http.MethodPatch, "/v1/guests/base"),
		notAllowed("POST on a guest", http.MethodPost, "/v1/guests/base"),
		notAllowed("GET start", http.MethodGet, "/v1/guests/base/start"),
		mediaType("spec as text/plain", "text/plain"),
		mediaType("spec without a content type", ""),
		mediaType("spec as a form", "application/x-www-form-urlencoded"),
		mediaType("spec as multipart", "multipart/form-data; boundary=x"),
		mediaType("spec as application/jsonx", "application/jsonx"),
		mediaType("spec as UTF-16 JSON", "application/json; charset=utf-16"),
		mediaType("unparsable content type", "application/json; ;"),
		notFound("start an unknown guest", http.MethodPost, "/v1/guests/nope/start"),
		notFound("stop an unknown guest", http.MethodPost, "/v1/guests/nope/stop"),
		notFound("delete an unknown guest", http.MethodDelete, "/v1/guests/nope"),
		notFound("console of an unknown guest", http.MethodGet, "/v1/guests/nope/console"),
		notFound("get a name with ESC", http.MethodGet, "/v1/guests/%1B%5B2J%1B%5D0;pwned%07"),
		notFound("delete a name with a newline", http.MethodDelete, "/v1/guests/base%0Atime=0%20level=INFO%20msg=deleted"),
		notFound("delete a name with a bidi override", http.MethodDelete, "/v1/guests/%E2%80%AEesab"),
		notFound("delete dot-dot", http.MethodDelete, "/v1/guests/.."),
		notFound("delete an escaped traversal", http.MethodDelete, "/v1/guests/..%2Fguests%2Fbase"),
		notFound("start a 300-byte name", http.MethodPost, "/v1/guests/"+strings.Repeat("a", 300)+"/start"),
		notFound("no such route", http.MethodGet, "/v1/guests/base/exec"),
		notFound("no such version", http.MethodGet, "/v2/guests"),
		rawCase(apiGroup, "stop with an unknown field", http.MethodPost, "/v1/guests/base/stop", "application/json",
			`{"deallocate":true,"purge":true}`, http.StatusBadRequest, "bad_request", `unknown field "purge"`),
		rawCase(apiGroup, "stop with a body over 64 KiB", http.MethodPost, "/v1/guests/base/stop", "application/json",
			`{"deallocate":true`+strings.Repeat(" ", maxBody)+`}`, http.StatusBadRequest, "bad_request", "request body too large"),
		rawCase(apiGroup, "stop with a wrong type", http.MethodPost, "/v1/guests/base/stop", "application/json",
			`{"force":"yes"}`, http.StatusBadRequest, "bad_request", "cannot unmarshal string"),
	}
}
