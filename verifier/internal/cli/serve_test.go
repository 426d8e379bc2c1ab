package cli

import (
	"reflect"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/confidant-cvm/confidant/verifier/internal/server"
)

// TestEveryConfigKeyHasItsFlag: each yaml key of server.Config has one
// serve flag bound to its field (named as the key, '-' for '_', but for
// --policy, which is repeated once per file), and every flag of the table
// sets a key: a key without its flag would be silently ignored on the
// command line.
func TestEveryConfigKeyHasItsFlag(t *testing.T) {
	var c server.Config
	v := reflect.ValueOf(&c).Elem()
	keys := map[uintptr]string{} // field address → yaml key
	for i := range v.NumField() {
		key, _, _ := strings.Cut(v.Type().Field(i).Tag.Get("yaml"), ",")
		if key == "" || key == "-" {
			t.Fatalf("field %s has no yaml key", v.Type().Field(i).Name)
		}
		keys[v.Field(i).Addr().Pointer()] = key
	}
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	serveFlags(fs)
	flags := map[string]string{} // yaml key → flag
	for _, sf := range serveFlagTable() {
		key, ok := keys[reflect.ValueOf(sf.field(&c)).Pointer()]
		if !ok {
			t.Errorf("--%s sets no config key", sf.name)
			continue
		}
		if other, dup := flags[key]; dup {
			t.Errorf("config key %s has two flags, --%s and --%s", key, other, sf.name)
		}
		flags[key] = sf.name
		if want := strings.ReplaceAll(key, "_", "-"); sf.name != want && !(key == "policies" && sf.name == "policy") {
			t.Errorf("config key %s has flag --%s, want --%s", key, sf.name, want)
		}
		if fs.Lookup(sf.name) == nil {
			t.Errorf("serve has no --%s", sf.name)
		}
	}
	for _, key := range keys {
		if _, ok := flags[key]; !ok {
			t.Errorf("config key %s has no flag", key)
		}
	}
}

// TestServeFlagsApplyEveryKey: each flag given on the command line reaches
// its config key, over a value from a config file.
func TestServeFlagsApplyEveryKey(t *testing.T) {
	values := map[string]string{"string": "x", "stringArray": "x", "bool": "true", "int": "7", "int64": "7",
		"float64": "7", "duration": "7s"}
	for _, sf := range serveFlagTable() {
		fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
		apply, _ := serveFlags(fs)
		val, ok := values[fs.Lookup(sf.name).Value.Type()]
		if !ok {
			t.Fatalf("--%s: no test value for type %s", sf.name, fs.Lookup(sf.name).Value.Type())
		}
		if err := fs.Parse([]string{"--" + sf.name + "=" + val}); err != nil {
			t.Fatal(err)
		}
		var cfg server.Config
		apply(&cfg)
		if reflect.ValueOf(sf.field(&cfg)).Elem().IsZero() {
			t.Errorf("--%s=%s did not reach its config key", sf.name, val)
		}
	}
}
