package fakeapns

import (
	"errors"
	"net/http"
	"net/url"
	"strings"
)

// APNsHosts are the host names of Apple's APNs provider API (production
// and development). nanomdm's push/nanopush addresses them directly.
var APNsHosts = []string{"api.push.apple.com", "api.development.push.apple.com"}

// Rewriter is an [http.RoundTripper] that sends requests addressed to
// one of Hosts to Target instead, and every other request unchanged.
//
// It exists because nanopush hard-codes Apple's APNs URL: a Rewriter
// lets a server push through an APNs proxy, or a test push to a fake,
// without forking the push provider. The request's path and query are
// kept (appended to Target's path); the original request is not
// modified.
type Rewriter struct {
	// Target is the scheme and host (and optional path prefix) that
	// matching requests are sent to.
	Target *url.URL
	// Hosts are the host names (without port) to rewrite, compared
	// case-insensitively. Any port on the request is dropped.
	Hosts []string
	// Base performs the rewritten and passed-through requests.
	// If nil, [http.DefaultTransport] is used.
	Base http.RoundTripper
}

// RewriteTransport returns a [Rewriter] that sends requests for Apple's
// APNs hosts ([APNsHosts]) to target and all others through rt.
// If rt is nil, [http.DefaultTransport] is used.
func RewriteTransport(target *url.URL, rt http.RoundTripper) http.RoundTripper {
	return &Rewriter{Target: target, Hosts: APNsHosts, Base: rt}
}

// RoundTrip implements [http.RoundTripper].
func (rw *Rewriter) RoundTrip(r *http.Request) (*http.Response, error) {
	base := rw.Base
	if base == nil {
		base = http.DefaultTransport
	}
	if r.URL == nil || !rw.matches(r.URL.Hostname()) {
		return base.RoundTrip(r)
	}
	if rw.Target == nil || rw.Target.Host == "" {
		// RoundTrippers must close the body even on error.
		if r.Body != nil {
			r.Body.Close()
		}
		return nil, errors.New("fakeapns: rewriter has no target URL: set Rewriter.Target")
	}
	r2 := r.Clone(r.Context())
	u := *r.URL
	u.Scheme = rw.Target.Scheme
	u.Host = rw.Target.Host
	u.Path = strings.TrimSuffix(rw.Target.Path, "/") + r.URL.Path
	if r.URL.RawPath != "" {
		u.RawPath = strings.TrimSuffix(rw.Target.EscapedPath(), "/") + r.URL.RawPath
	}
	r2.URL = &u
	// An empty Host makes the transport use the rewritten URL's host,
	// which is also what TLS verifies against.
	r2.Host = ""
	return base.RoundTrip(r2)
}

func (rw *Rewriter) matches(host string) bool {
	for _, h := range rw.Hosts {
		if strings.EqualFold(h, host) {
			return true
		}
	}
	return false
}
