package events

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
)

// pollURL is where the receiver of stream id polls.
func (t *Transmitter) pollURL(id string) string {
	return t.issuer + "/ssf/v1/streams/" + url.PathEscape(id) + "/poll"
}

// apply validates c and writes it into rec (a new or an existing stream). keepAuth keeps the
// sealed Authorization header when c has none and the endpoint did not change.
func (t *Transmitter) apply(rec *StreamRecord, c Config, keepAuth bool) error {
	d := c.Delivery
	// The sealed header may stay only where it was going: to the same push endpoint.
	keep := keepAuth && d.AuthorizationHeader == "" && rec.Delivery == deliveryPush && rec.EndpointURL == d.EndpointURL
	switch d.Method {
	case MethodPush, deliveryPush:
		if err := t.validateEndpoint(d.EndpointURL); err != nil {
			return err
		}
		rec.Delivery, rec.EndpointURL = deliveryPush, d.EndpointURL
	case MethodPoll, deliveryPoll, "":
		if d.EndpointURL != "" && d.EndpointURL != t.pollURL(rec.ID) {
			return fmt.Errorf("%w stream: a poll stream's endpoint_url is Hale's (%s); a poll receiver calls Hale", ErrInvalid, t.pollURL(rec.ID))
		}
		if d.AuthorizationHeader != "" {
			return fmt.Errorf("%w stream: authorization_header is for push streams; a poll receiver authenticates to Hale", ErrInvalid)
		}
		rec.Delivery, rec.EndpointURL, keep = deliveryPoll, "", false
	default:
		return fmt.Errorf("%w stream: delivery method must be %s (push) or %s (poll), got %q", ErrInvalid, MethodPush, MethodPoll, truncate(d.Method, 64))
	}
	switch {
	case keep:
	case d.AuthorizationHeader == "":
		rec.AuthSealed = nil
	case len(d.AuthorizationHeader) > maxAuthHeader:
		return fmt.Errorf("%w stream: authorization_header is longer than %d bytes", ErrInvalid, maxAuthHeader)
	case hasControl(d.AuthorizationHeader):
		return fmt.Errorf("%w stream: authorization_header contains control characters", ErrInvalid)
	default:
		rec.AuthSealed = t.key.Seal(sealPurpose, []byte(d.AuthorizationHeader))
	}

	if len(c.EventsRequested) > maxEventsRequested {
		return fmt.Errorf("%w stream: more than %d events_requested", ErrInvalid, maxEventsRequested)
	}
	var evs []string
	for _, e := range c.EventsRequested {
		if e == "" || len(e) > maxEventURI || hasControl(e) {
			return fmt.Errorf("%w stream: events_requested holds an empty, overlong or control-character value", ErrInvalid)
		}
		if !slices.Contains(evs, e) {
			evs = append(evs, e) // kept as asked, even when Hale does not emit it: SSF says ignore
		}
	}
	rec.EventsRequested = evs

	if len(c.Description) > maxDescription || hasControl(c.Description) {
		return fmt.Errorf("%w stream: description is longer than %d bytes or has control characters", ErrInvalid, maxDescription)
	}
	rec.Description = c.Description

	if rec.Audience == "" { // set once, when the stream is created: SSF's aud cannot change
		aud := c.Audience
		switch {
		case aud == "" && rec.Delivery == deliveryPush:
			aud = rec.EndpointURL
		case aud == "":
			aud = t.pollURL(rec.ID)
		}
		if len(aud) > maxAudience || strings.TrimSpace(aud) == "" || hasControl(aud) {
			return fmt.Errorf("%w stream: aud must be 1 to %d bytes without control characters", ErrInvalid, maxAudience)
		}
		rec.Audience = aud
	} else if c.Audience != "" && c.Audience != rec.Audience {
		return fmt.Errorf("%w stream: aud cannot be changed (it is %q)", ErrInvalid, truncate(rec.Audience, 64))
	}
	return nil
}

// validateEndpoint accepts https URLs, and http ones only to loopback hosts (a receiver on the
// same machine, which must then be on the allow-list): SETs and the receiver's credential must
// not cross a network in the clear. An address literal must be one delivery may connect to.
func (t *Transmitter) validateEndpoint(raw string) error {
	if raw == "" {
		return fmt.Errorf("%w stream: delivery.endpoint_url is required for push delivery", ErrInvalid)
	}
	if len(raw) > maxURL {
		return fmt.Errorf("%w stream: endpoint_url is longer than %d bytes", ErrInvalid, maxURL)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("%w stream: endpoint_url: %v", ErrInvalid, err)
	}
	if u.Host == "" || u.Hostname() == "" {
		return fmt.Errorf("%w stream: endpoint_url must be an absolute URL with a host", ErrInvalid)
	}
	if u.User != nil {
		return fmt.Errorf("%w stream: endpoint_url must not carry credentials; use authorization_header", ErrInvalid)
	}
	if u.Fragment != "" {
		return fmt.Errorf("%w stream: endpoint_url must not have a fragment", ErrInvalid)
	}
	port := u.Port()
	switch u.Scheme {
	case "https":
		port = cmpOr(port, "443")
	case "http":
		if !isLoopback(u.Hostname()) {
			return fmt.Errorf("%w stream: endpoint_url must be https (http only to localhost)", ErrInvalid)
		}
		port = cmpOr(port, "80")
	default:
		return fmt.Errorf("%w stream: endpoint_url scheme %q is not https", ErrInvalid, truncate(u.Scheme, 32))
	}
	return t.guard.checkLiteral(u.Hostname(), port)
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := netipAddr(host)
	return ip.IsValid() && ip.IsLoopback()
}

func hasControl(s string) bool {
	return strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f })
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
