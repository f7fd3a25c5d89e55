package policies

import (
	"errors"
	"strings"
)

// ErrBadVersion is returned by CompareVersions for a version with no leading dotted number.
var ErrBadVersion = errors.New("not a dotted numeric version")

// CompareVersions compares two dotted numeric versions component by component and returns -1,
// 0 or +1. Missing components count as zero ("17.4" equals "17.4.0"), so Apple ("17.4.1"),
// Windows ("10.0.22631.3447") and distribution ("22.04", "12") versions compare naturally.
// A leading "v" and anything after the numeric part ("17.4.1 (a)", "24.04 LTS",
// "6.8.0-45-generic") are ignored. It does not allocate.
func CompareVersions(a, b string) (int, error) {
	a, b = versionCore(a), versionCore(b)
	if a == "" || b == "" {
		return 0, ErrBadVersion
	}
	for a != "" || b != "" {
		var x, y uint64
		var ok bool
		if x, a, ok = nextComponent(a); !ok {
			return 0, ErrBadVersion
		}
		if y, b, ok = nextComponent(b); !ok {
			return 0, ErrBadVersion
		}
		switch {
		case x < y:
			return -1, nil
		case x > y:
			return 1, nil
		}
	}
	return 0, nil
}

// versionCore returns the leading run of digits and dots, without a trailing dot.
func versionCore(s string) string {
	s = strings.TrimSpace(s)
	s = strings.TrimPrefix(strings.TrimPrefix(s, "v"), "V")
	i := 0
	for i < len(s) && (s[i] >= '0' && s[i] <= '9' || s[i] == '.') {
		i++
	}
	s = strings.TrimRight(s[:i], ".")
	if s == "" || s[0] == '.' {
		return ""
	}
	return s
}

// nextComponent parses the first component of a non-empty core, or returns 0 when s is empty.
func nextComponent(s string) (v uint64, rest string, ok bool) {
	if s == "" {
		return 0, "", true
	}
	i := 0
	for i < len(s) && s[i] != '.' {
		if i >= 18 {
			return 0, "", false // would overflow; no real version component is this long
		}
		v = v*10 + uint64(s[i]-'0')
		i++
	}
	if i == 0 {
		return 0, "", false // empty component: "17..4"
	}
	if i < len(s) {
		i++ // skip the dot
	}
	return v, s[i:], true
}
