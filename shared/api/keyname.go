package api

// MaxKeyNameLen is the longest key name.
const MaxKeyNameLen = 128

// KeyNameRule says in words what ValidKeyName accepts, for error messages.
const KeyNameRule = "1-128 of [A-Za-z0-9._-], starting alphanumeric"

// ValidKeyName reports whether name is a valid key name: 1 to 128 letters,
// digits, '.', '_' or '-', starting with a letter or digit (the pattern
// ^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$). A valid name is printable ASCII, safe
// to log and to put in a path as it is.
//
// It is written out rather than as a regular expression: compiling one at
// start-up cost the agent, as PID 1 in an emulated guest, tens of
// milliseconds before its first line.
func ValidKeyName(name string) bool {
	if len(name) < 1 || len(name) > MaxKeyNameLen || !isAlnum(name[0]) {
		return false
	}
	for i := 1; i < len(name); i++ {
		if c := name[i]; !isAlnum(c) && c != '.' && c != '_' && c != '-' {
			return false
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}
