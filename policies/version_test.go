package policies

import (
	"errors"
	"testing"
)

func TestCompareVersions(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"17.4.1", "17.4", 1},
		{"17.4", "17.4.1", -1},
		{"17.4", "17.4.0", 0},
		{"17.4.0.0", "17.4", 0},
		{"17.10", "17.9", 1},
		{"9", "10", -1},
		{"10.0.22631", "10.0.22621", 1},
		{"10.0.19045", "10.0.22631", -1},
		{"22.04", "22.04", 0},
		{"22.04.3", "22.04", 1},
		{"20.04", "22.04", -1},
		{"24.04 LTS", "22.04", 1},
		{"12", "12.5", -1},
		{"17.4.1 (a)", "17.4.1", 0},
		{"v1.2", "1.2", 0},
		{"6.8.0-45-generic", "6.8", 0},
		{"14.5.", "14.5", 0},
		{"017.4", "17.4", 0},
	}
	for _, tc := range tests {
		got, err := CompareVersions(tc.a, tc.b)
		if err != nil || got != tc.want {
			t.Errorf("CompareVersions(%q, %q) = %d, %v; want %d", tc.a, tc.b, got, err, tc.want)
		}
		if back, _ := CompareVersions(tc.b, tc.a); back != -tc.want {
			t.Errorf("CompareVersions(%q, %q) = %d; want %d (antisymmetry)", tc.b, tc.a, back, -tc.want)
		}
	}
	for _, bad := range [][2]string{{"", "1"}, {"abc", "1"}, {"1", ".5"}, {"17..4", "17"}, {"1", "(a)"},
		{"1234567890123456789012", "1"}} {
		if _, err := CompareVersions(bad[0], bad[1]); !errors.Is(err, ErrBadVersion) {
			t.Errorf("CompareVersions(%q, %q) err = %v, want ErrBadVersion", bad[0], bad[1], err)
		}
	}
}

func TestCompareVersionsAllocs(t *testing.T) {
	n := testing.AllocsPerRun(100, func() { _, _ = CompareVersions("10.0.22631.3447", "10.0.22631") })
	if n != 0 {
		t.Errorf("CompareVersions allocates %.0f times per call", n)
	}
}

func TestCompareOSWindowsRevision(t *testing.T) {
	tests := []struct {
		version, build, min string
		want                int
	}{
		{"10.0.22631", "22631.3447", "10.0.22631.3447", 0},
		{"10.0.22631", "22631.3448", "10.0.22631.3447", 1},
		{"10.0.22631", "22631.3000", "10.0.22631.3447", -1},
		{"10.0.22631", "", "10.0.22631.3447", -1}, // revision unknown: cannot meet it
		{"10.0.22635", "", "10.0.22631.3447", 1},
		{"10.0.19045", "19045.9999", "10.0.22631.3447", -1},
		{"10.0.22631", "22631.3447", "10.0.22631", 0},
		{"10.0.22631.3447", "", "10.0.22631.3447", 0},
	}
	for _, tc := range tests {
		got, err := compareOS(PlatformWindows, OSInfo{Version: tc.version, Build: tc.build}, tc.min)
		if err != nil || got != tc.want {
			t.Errorf("compareOS(%q build %q, %q) = %d, %v; want %d", tc.version, tc.build, tc.min, got, err, tc.want)
		}
	}
}
