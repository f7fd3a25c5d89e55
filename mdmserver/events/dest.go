package events

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ErrDestinationNotAllowed is why push delivery refused to connect: the receiver's address is
// not a public one and the operator's allow-list does not name it.
var ErrDestinationNotAllowed = errors.New("events: destination not allowed")

// AllowList names the non-public destinations push delivery may reach anyway: receivers on the
// same machine or the hospital's own network. Entries are CIDR prefixes or single addresses
// (any port), or host:port pairs: an address and port, or a DNS name and port, which allows
// that name whatever it resolves to (the operator vouches for the name, not the address).
type AllowList struct {
	prefixes  []netip.Prefix
	hostPorts map[string]bool // lower-case host (no brackets) + ":" + port
}

// ParseAllowList reads allow-list entries such as "10.20.0.0/16", "192.168.1.7",
// "receiver.internal:8443" or "[::1]:9000".
func ParseAllowList(entries []string) (*AllowList, error) {
	a := &AllowList{hostPorts: map[string]bool{}}
	var errs []error
	for _, raw := range entries {
		e := strings.TrimSpace(raw)
		if p, err := netip.ParsePrefix(e); err == nil {
			a.prefixes = append(a.prefixes, p.Masked())
			continue
		}
		if ip, err := netip.ParseAddr(e); err == nil {
			a.prefixes = append(a.prefixes, netip.PrefixFrom(ip.Unmap(), ip.Unmap().BitLen()))
			continue
		}
		host, port, err := net.SplitHostPort(e)
		n, perr := strconv.Atoi(port)
		if err != nil || perr != nil || n < 1 || n > 65535 || host == "" || len(host) > 253 || strings.ContainsAny(host, "/*") {
			errs = append(errs, fmt.Errorf("%q: want a CIDR prefix, an IP address, or host:port", truncate(raw, 64)))
			continue
		}
		if ip, err := netip.ParseAddr(host); err == nil {
			host = ip.Unmap().String()
		}
		a.hostPorts[strings.ToLower(host)+":"+strconv.Itoa(n)] = true
	}
	return a, errors.Join(errs...)
}

// permits reports whether the allow-list names ip (by prefix, or as address and port) or the
// name host with port.
func (a *AllowList) permits(host, port string, ip netip.Addr) bool {
	if a == nil {
		return false
	}
	if a.hostPorts[strings.ToLower(strings.Trim(host, "[]"))+":"+port] {
		return true
	}
	if !ip.IsValid() {
		return false
	}
	ip = ip.Unmap()
	if a.hostPorts[ip.String()+":"+port] {
		return true
	}
	for _, p := range a.prefixes {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// nonPublic are the ranges no receiver on the internet can be at, beyond what netip's
// predicates cover: shared address space, IETF and documentation ranges, benchmarking,
// reserved, and the IPv6 prefixes that embed (and would reach) an IPv4 address.
var nonPublic = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("192.0.0.0/24"),
	netip.MustParsePrefix("192.0.2.0/24"),
	netip.MustParsePrefix("198.18.0.0/15"),
	netip.MustParsePrefix("198.51.100.0/24"),
	netip.MustParsePrefix("203.0.113.0/24"),
	netip.MustParsePrefix("240.0.0.0/4"),
	netip.MustParsePrefix("64:ff9b::/96"),
	netip.MustParsePrefix("64:ff9b:1::/48"),
	netip.MustParsePrefix("100::/64"),
	netip.MustParsePrefix("2001::/32"),
	netip.MustParsePrefix("2001:db8::/32"),
	netip.MustParsePrefix("2002::/16"),
}

// isPublic reports whether ip is a global unicast address outside every private, loopback,
// link-local, shared, documentation or reserved range.
func isPublic(ip netip.Addr) bool {
	ip = ip.Unmap()
	if !ip.IsValid() || !ip.IsGlobalUnicast() || ip.IsPrivate() {
		return false
	}
	for _, p := range nonPublic {
		if p.Contains(ip) {
			return false
		}
	}
	return true
}

// guard is the dialer of push delivery: it connects only to public addresses that are not this
// machine's own, or to what the allow-list names, and checks the address actually dialled, so
// a name that resolves (or re-resolves) to an inside address is refused.
type guard struct {
	allow  *AllowList
	lookup func(ctx context.Context, host string) ([]netip.Addr, error)
	// own lists this machine's addresses; a public one is still Hale itself.
	own     func() []netip.Addr
	timeout time.Duration
}

func newGuard() *guard {
	return &guard{
		lookup: func(ctx context.Context, host string) ([]netip.Addr, error) {
			return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		},
		own:     interfaceAddrs,
		timeout: defaultHTTPTimeout,
	}
}

// interfaceAddrs are the addresses of this machine's interfaces.
func interfaceAddrs() []netip.Addr {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	var out []netip.Addr
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil {
			out = append(out, p.Addr().Unmap())
		}
	}
	return out
}

// allowed reports whether push delivery may connect to ip on port for the URL host host.
func (g *guard) allowed(host, port string, ip netip.Addr) bool {
	if g.allow.permits(host, port, ip) {
		return true
	}
	if !isPublic(ip) {
		return false
	}
	for _, own := range g.own() {
		if own == ip.Unmap() {
			return false
		}
	}
	return true
}

// notAllowed is the error for a refused destination; the address is for the server's log only.
func notAllowed(addr string) error {
	return fmt.Errorf("%w: %s is not a public address and ssf_allowed_destinations does not name it", ErrDestinationNotAllowed, addr)
}

// DialContext resolves addr itself and dials the permitted addresses one by one, by address,
// with a Control hook that checks the socket's address once more just before connecting.
func (g *guard) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	var ips []netip.Addr
	if ip, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil {
		ips = []netip.Addr{ip}
	} else if ips, err = g.lookup(ctx, host); err != nil {
		return nil, err
	}
	firstErr := error(nil)
	for _, ip := range ips {
		if !g.allowed(host, port, ip) {
			firstErr = cmpErr(firstErr, notAllowed(net.JoinHostPort(ip.String(), port)))
			continue
		}
		d := net.Dialer{Timeout: g.timeout, KeepAlive: 30 * time.Second, Control: g.control(host)}
		c, err := d.DialContext(ctx, network, net.JoinHostPort(ip.Unmap().String(), port))
		if err == nil {
			return c, nil
		}
		firstErr = cmpErr(firstErr, err)
	}
	if firstErr == nil {
		firstErr = fmt.Errorf("events: %s resolved to no address", truncate(host, 253))
	}
	return nil, firstErr
}

// cmpErr keeps the first error, except that a connection error beats a refusal: a name with a
// public and a private address should report why the public one failed.
func cmpErr(first, next error) error {
	if first == nil || errors.Is(first, ErrDestinationNotAllowed) && !errors.Is(next, ErrDestinationNotAllowed) {
		return next
	}
	return first
}

// control checks the address a socket is about to connect to.
func (g *guard) control(host string) func(network, address string, _ syscall.RawConn) error {
	return func(_, address string, _ syscall.RawConn) error {
		ap, err := netip.ParseAddrPort(address)
		if err != nil {
			return notAllowed(address)
		}
		if !g.allowed(host, strconv.Itoa(int(ap.Port())), ap.Addr()) {
			return notAllowed(address)
		}
		return nil
	}
}

// checkLiteral refuses, when a stream is created or changed, an endpoint whose host is an IP
// address that delivery would refuse. Names are checked when delivery connects.
func (g *guard) checkLiteral(host, port string) error {
	ip, err := netip.ParseAddr(strings.Trim(host, "[]"))
	if err != nil {
		return nil
	}
	if !g.allowed(host, port, ip) {
		return fmt.Errorf("%w stream: endpoint_url %s is not a public address (loopback, private, link-local or this server's own); an operator may allow it with ssf_allowed_destinations",
			ErrInvalid, ip)
	}
	return nil
}

// netipAddr parses host as an IP address (brackets allowed); not one gives the zero Addr.
func netipAddr(host string) netip.Addr {
	ip, _ := netip.ParseAddr(strings.Trim(host, "[]"))
	return ip.Unmap()
}
