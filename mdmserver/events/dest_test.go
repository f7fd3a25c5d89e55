package events

import (
	"errors"
	"net/netip"
	"testing"
)

func TestIsPublic(t *testing.T) {
	for addr, want := range map[string]bool{
		"8.8.8.8": true, "2606:4700:4700::1111": true, "93.184.216.34": true,
		"127.0.0.1": false, "127.8.9.10": false, "::1": false,
		"10.1.2.3": false, "172.16.0.1": false, "172.31.255.255": false, "192.168.1.1": false,
		"169.254.169.254": false, "fe80::1": false, "fd00::1": false, "fc00::1": false,
		"0.0.0.0": false, "::": false, "100.64.0.1": false, "192.0.2.1": false, "224.0.0.1": false,
		"255.255.255.255": false, "::ffff:10.0.0.1": false, "::ffff:127.0.0.1": false,
		"64:ff9b::a00:1": false, "2002:a00:1::1": false, "240.0.0.1": false, "198.18.0.1": false,
	} {
		if got := isPublic(netip.MustParseAddr(addr)); got != want {
			t.Errorf("isPublic(%s) = %v, want %v", addr, got, want)
		}
	}
}

func TestParseAllowList(t *testing.T) {
	a, err := ParseAllowList([]string{"10.20.0.0/16", " 192.168.1.7 ", "receiver.Internal:8443", "[::1]:9000", "127.0.0.1:9001"})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		host, port, ip string
		want           bool
	}{
		{"10.20.3.4", "443", "10.20.3.4", true},
		{"10.21.0.1", "443", "10.21.0.1", false},
		{"x", "1", "192.168.1.7", true},
		{"receiver.internal", "8443", "10.9.9.9", true}, // the name is vouched for, whatever it resolves to
		{"receiver.internal", "443", "10.9.9.9", false},
		{"other.internal", "8443", "10.9.9.9", false},
		{"localhost", "9000", "::1", true},
		{"localhost", "9001", "127.0.0.1", true},
		{"localhost", "9002", "127.0.0.1", false},
	} {
		if got := a.permits(c.host, c.port, netip.MustParseAddr(c.ip)); got != c.want {
			t.Errorf("permits(%s, %s, %s) = %v, want %v", c.host, c.port, c.ip, got, c.want)
		}
	}
	for _, bad := range []string{"", "10.0.0.0/33", "host", "host:0", "host:99999", "*.internal:443", "a/b:1"} {
		if _, err := ParseAllowList([]string{bad}); err == nil {
			t.Errorf("ParseAllowList(%q) accepted", bad)
		}
	}
}

// The dialler's Control hook refuses an inside address on its own, whatever resolved it, and
// the machine's own public addresses are inside too.
func mustAllow(t testing.TB, entries ...string) *AllowList {
	a, err := ParseAllowList(entries)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestGuardChecksTheDialledAddress(t *testing.T) {
	g := newGuard()
	g.own = func() []netip.Addr { return []netip.Addr{netip.MustParseAddr("8.8.4.4")} }
	for _, addr := range []string{"10.0.0.1:443", "127.0.0.1:80", "[::1]:443", "169.254.169.254:80", "8.8.4.4:443"} {
		if err := g.control("receiver.example")("tcp", addr, nil); !errors.Is(err, ErrDestinationNotAllowed) {
			t.Errorf("control(%s) = %v", addr, err)
		}
	}
	if err := g.control("receiver.example")("tcp", "8.8.8.8:443", nil); err != nil {
		t.Errorf("control(public) = %v", err)
	}
	g.allow = mustAllow(t, "receiver.example:443")
	if err := g.control("receiver.example")("tcp", "10.0.0.1:443", nil); err != nil {
		t.Errorf("control(allow-listed name) = %v", err)
	}
}
