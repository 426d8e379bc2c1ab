package config

// The name checks are written out rather than as regular expressions (the
// key name's is api.ValidKeyName): compiling those at start-up cost the agent, as PID 1 in an emulated guest,
// tens of milliseconds before its first line.

// validUUID: canonical 8-4-4-4-12 hexadecimal.
func validUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch i {
		case 8, 13, 18, 23:
			if s[i] != '-' {
				return false
			}
		default:
			if !isHex(s[i]) {
				return false
			}
		}
	}
	return true
}

// validPortName: 1 to max of [A-Za-z0-9_.:-] (interface and virtio-serial
// port names).
func validPortName(s string, max int) bool {
	return len(s) >= 1 && len(s) <= max && allOf(s, func(c byte) bool {
		return isAlnum(c) || c == '_' || c == '.' || c == ':' || c == '-'
	})
}

func allOf(s string, ok func(byte) bool) bool {
	for i := 0; i < len(s); i++ {
		if !ok(s[i]) {
			return false
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

func isHex(c byte) bool { return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F' }
