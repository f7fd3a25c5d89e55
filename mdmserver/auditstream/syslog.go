package auditstream

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/halemdm/hale/mdmserver/audit"
)

// SyslogSink sends each entry as an RFC 5424 message over TLS (RFC 5425: octet-counted frames)
// to a syslog receiver (rsyslog, syslog-ng, a SIEM's collector). The message is the entry's
// exact stored JSON; its structured data carry the index and leaf hash:
//
//	<110>1 2026-12-03T10:00:00.123456Z host hale 4242 device.wipe [hale@32473 index="12" leaf="…"] {"index":12,…}
//
// 32473 is the private enterprise number RFC 5612 reserves for examples. The facility is
// log audit (13); entries whose outcome is not ok are sent at warning, the others at info.
//
// Syslog over TCP has no acknowledgements: a write the kernel took can still be lost when the
// connection breaks. So the sink keeps the last records it wrote on the current connection and
// sends them again, first thing, on the next one: the receiver may see an entry twice (same
// index), never miss one.
type SyslogSink struct {
	name, addr string
	tls        *tls.Config
	hostname   string
	timeout    time.Duration
	keep       int

	conn    net.Conn
	written []audit.Record // on the current connection, the newest keep of them
	resend  []audit.Record // written on a connection that failed: sent again on the next
}

// SyslogOption configures a SyslogSink.
type SyslogOption func(*SyslogSink)

// WithHostname sets the HOSTNAME field (default: os.Hostname).
func WithHostname(h string) SyslogOption { return func(s *SyslogSink) { s.hostname = h } }

// WithTimeout bounds the connect and each batch's write (default 10s).
func WithTimeout(d time.Duration) SyslogOption { return func(s *SyslogSink) { s.timeout = d } }

// NewSyslogSink returns a sink sending to addr (host:port) over TLS with cfg. It connects on
// the first delivery.
func NewSyslogSink(name, addr string, cfg *tls.Config, opts ...SyslogOption) *SyslogSink {
	h, _ := os.Hostname()
	s := &SyslogSink{name: name, addr: addr, tls: cfg, hostname: h, timeout: 10 * time.Second, keep: 1024}
	for _, o := range opts {
		o(s)
	}
	if s.hostname == "" {
		s.hostname = "-"
	}
	return s
}

// Name returns the sink's name.
func (s *SyslogSink) Name() string { return s.name }

// Deliver sends the records (after any that a failed connection may have lost).
func (s *SyslogSink) Deliver(ctx context.Context, recs []audit.Record) error {
	if s.conn == nil {
		d := tls.Dialer{NetDialer: &net.Dialer{Timeout: s.timeout}, Config: s.tls}
		conn, err := d.DialContext(ctx, "tcp", s.addr)
		if err != nil {
			return fmt.Errorf("auditstream: syslog %s: %w", s.addr, err)
		}
		s.conn, s.written = conn, nil
	}
	batch := append(s.resend, recs...)
	var b []byte
	for _, r := range batch {
		msg := s.message(r)
		b = strconv.AppendInt(b, int64(len(msg)), 10)
		b = append(b, ' ')
		b = append(b, msg...)
	}
	_ = s.conn.SetWriteDeadline(time.Now().Add(s.timeout))
	if _, err := s.conn.Write(b); err != nil {
		s.conn.Close()
		s.conn = nil
		// Everything written on this connection may be lost: send it again first next time
		// (recs come again from the caller, whose cursor did not move).
		s.resend = append(append([]audit.Record(nil), s.written...), s.resend...)
		s.written = nil
		return fmt.Errorf("auditstream: syslog %s: %w", s.addr, err)
	}
	s.resend = nil
	s.written = append(s.written, batch...)
	if len(s.written) > s.keep {
		s.written = append([]audit.Record(nil), s.written[len(s.written)-s.keep:]...)
	}
	return nil
}

// message formats one record as an RFC 5424 message.
func (s *SyslogSink) message(r audit.Record) []byte {
	var head struct {
		Time    time.Time `json:"time"`
		Action  string    `json:"action"`
		Outcome string    `json:"outcome"`
	}
	_ = json.Unmarshal(r.Data, &head) // a field it cannot read is sent as NILVALUE
	const facility = 13               // log audit
	severity := 6                     // informational
	if head.Outcome != "" && head.Outcome != audit.OutcomeOK {
		severity = 4 // warning: refused, denied or failed
	}
	ts := "-"
	if !head.Time.IsZero() {
		ts = head.Time.UTC().Format("2006-01-02T15:04:05.000000Z07:00")
	}
	b := fmt.Appendf(nil, "<%d>1 %s %s hale %d %s [hale@32473 index=\"%d\" leaf=\"%s\"] ",
		facility*8+severity, ts, header(s.hostname, 255), os.Getpid(), header(head.Action, 32), r.Index, r.LeafHash)
	return append(b, r.Data...)
}

// header makes s a valid RFC 5424 header field: printable US-ASCII without spaces, at most n
// characters, or "-".
func header(s string, n int) string {
	s = strings.Map(func(r rune) rune {
		if r < 33 || r > 126 {
			return -1
		}
		return r
	}, s)
	if s == "" {
		return "-"
	}
	return s[:min(len(s), n)]
}

// Close closes the connection.
func (s *SyslogSink) Close() error {
	if s.conn == nil {
		return nil
	}
	err := s.conn.Close()
	s.conn = nil
	return err
}
