package events_test

import (
	"context"
	"crypto/x509"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/halemdm/hale/mdmserver/events"
)

// Inside addresses given literally are refused when the stream is created, unless the
// allow-list names them.
func TestCreateRefusesInsideAddresses(t *testing.T) {
	f := newFixture(t, events.WithAllowList(nil))
	for _, u := range []string{
		"https://127.0.0.1/events", "http://127.0.0.1:9000/events", "https://[::1]:8443/",
		"https://169.254.169.254/latest/meta-data/", "https://10.1.2.3:8443/ssf", "https://172.16.0.9/",
		"https://192.168.0.10/", "https://[fd00::1]/", "https://0.0.0.0/", "https://[::ffff:10.0.0.1]/",
		"https://100.64.0.1/", "https://[fe80::1]/",
	} {
		_, err := f.tr.CreateStream(t.Context(), rx, events.Config{Delivery: events.Delivery{Method: events.MethodPush, EndpointURL: u}})
		if !errors.Is(err, events.ErrInvalid) || !strings.Contains(err.Error(), "ssf_allowed_destinations") {
			t.Errorf("%s: %v", u, err)
		}
	}
	if l, _ := f.tr.ListStreams(t.Context(), rx); len(l) != 0 {
		t.Errorf("refused streams were stored: %+v", l)
	}
	// Names are checked when delivery connects, not here.
	if _, err := f.tr.CreateStream(t.Context(), rx, events.Config{Delivery: events.Delivery{Method: events.MethodPush, EndpointURL: "https://localhost:8443/"}}); err != nil {
		t.Errorf("a name was refused at create: %v", err)
	}

	allowed := newFixture(t, events.WithAllowList(events.MustAllow(t, "10.1.2.0/24", "169.254.169.254:443")))
	for _, u := range []string{"https://10.1.2.3:8443/ssf", "https://169.254.169.254/"} {
		if _, err := allowed.tr.CreateStream(t.Context(), rx, events.Config{Delivery: events.Delivery{Method: events.MethodPush, EndpointURL: u}}); err != nil {
			t.Errorf("%s on the allow-list: %v", u, err)
		}
	}
}

// A name that resolves to an inside address is refused when delivery connects: the receiver
// behind it (here a real one, on loopback) is never called, the SET stays, and the stream
// shows the class only. Allow-listed, by CIDR or by name and port, it is delivered.
func TestConnectRefusesInsideAddresses(t *testing.T) {
	// httptest's certificate names example.com: the resolver sends that name to loopback.
	rc := newTLSReceiver(t)
	port := strconv.Itoa(rc.srv.Listener.Addr().(*net.TCPAddr).Port)
	res := &resolver{names: map[string]string{
		"example.com": "127.0.0.1", "metadata.test": "169.254.169.254", "intranet.test": "10.1.2.3",
	}}
	reg := prometheus.NewRegistry()
	f := newFixture(t, events.WithAllowList(nil), events.WithResolver(res.lookup), events.WithRegisterer(reg), events.WithRootCAs(rc.roots()))
	run(t, f.tr)
	var ids []string
	for _, host := range []string{"example.com", "metadata.test", "intranet.test"} {
		ids = append(ids, f.pushStream(t, "https://"+host+":"+port+"/events").StreamID)
	}
	emit(t, f.tr, revokedEvent("dev-1"))
	for _, id := range ids {
		waitFor(t, "the refusal", func() bool {
			st, _ := f.tr.GetStream(t.Context(), rx, id)
			return st.LastError != ""
		})
		st, _ := f.tr.GetStream(t.Context(), rx, id)
		if st.LastError != "destination not allowed" || st.Pending != 1 {
			t.Errorf("stream %s: last_error %q, pending %d", id, st.LastError, st.Pending)
		}
	}
	if n := len(rc.got()); n != 0 {
		t.Fatalf("the inside receiver was called %d times", n)
	}
	if v := testutil.ToFloat64(f.tr.Deliveries("push", events.ResultNotAllowed)); v < 3 {
		t.Errorf("destination_denied deliveries = %v, want at least 3", v)
	}

	for _, byName := range []bool{false, true} {
		rc := newTLSReceiver(t)
		port := strconv.Itoa(rc.srv.Listener.Addr().(*net.TCPAddr).Port)
		entry := "127.0.0.0/8"
		if byName {
			entry = "example.com:" + port
		}
		f := newFixture(t, events.WithAllowList(events.MustAllow(t, entry)), events.WithResolver(res.lookup), events.WithRootCAs(rc.roots()))
		run(t, f.tr)
		s := f.pushStream(t, "https://example.com:"+port+"/events")
		emit(t, f.tr, revokedEvent("dev-1"))
		waitFor(t, "delivery to the allowed "+entry, func() bool { return len(rc.got()) == 1 && f.tr.Pending(s.StreamID) == 0 })
	}
}

// What a stream shows of a failed push is a class: no address, port or transport error, so a
// receiver cannot use Hale to learn what listens where. Redirects are not followed.
func TestPushErrorsAreClasses(t *testing.T) {
	closed := httptest.NewServer(http.NotFoundHandler())
	closedURL := closed.URL
	closed.Close() // its port now refuses connections
	tlsSrv := httptest.NewTLSServer(http.NotFoundHandler())
	t.Cleanup(tlsSrv.Close)
	target := newReceiver(t, nil)
	redirect := newReceiver(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target.srv.URL, http.StatusFound)
	})
	down := newReceiver(t, func(_ int, w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusServiceUnavailable) })

	f := newFixture(t) // loopback allowed; tlsSrv's CA is not trusted
	run(t, f.tr)
	want := map[string]string{}
	for u, class := range map[string]string{
		closedURL + "/events":                "connection failed",
		tlsURL(tlsSrv.URL) + "/events":       "TLS error",
		redirect.srv.URL + "/events":         "receiver refused: 302",
		down.srv.URL + "/events":             "receiver refused: 503",
		"https://localhost:1/events?port=no": "connection failed",
	} {
		want[f.pushStream(t, u).StreamID] = class
	}
	emit(t, f.tr, revokedEvent("dev-1"))
	for id, class := range want {
		waitFor(t, "a failed push on "+id, func() bool {
			st, _ := f.tr.GetStream(t.Context(), rx, id)
			return st.LastError != ""
		})
		if st, _ := f.tr.GetStream(t.Context(), rx, id); st.LastError != class {
			t.Errorf("%s: last_error %q, want %q", st.Delivery.EndpointURL, st.LastError, class)
		}
	}
	if n := len(target.got()); n != 0 {
		t.Errorf("a redirect was followed: the target got %d pushes", n)
	}
}

// resolver answers names from a table, as DNS would, and counts lookups.
type resolver struct {
	names   map[string]string
	lookups atomic.Int32
}

func (r *resolver) lookup(_ context.Context, host string) ([]netip.Addr, error) {
	r.lookups.Add(1)
	if a, ok := r.names[host]; ok {
		return []netip.Addr{netip.MustParseAddr(a)}, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

// newTLSReceiver is a receiver that serves HTTPS with httptest's certificate.
func newTLSReceiver(t testing.TB) *receiver {
	rc := newReceiver(t, nil)
	rc.srv.Close()
	srv := httptest.NewUnstartedServer(rc.srv.Config.Handler)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	rc.srv = srv
	return rc
}

func (rc *receiver) roots() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(rc.srv.Certificate())
	return pool
}

// tlsURL names an httptest TLS server by 127.0.0.1, which its certificate covers, so that the
// handshake fails only on trust.
func tlsURL(raw string) string {
	u, _ := url.Parse(raw)
	return "https://" + u.Host
}
