package mdmserver

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"

	"github.com/halemdm/hale/mdmserver/auditstream"
)

// AuditSink is one destination every audit entry is streamed to (audit_sinks in the
// configuration file), at least once and in order, from a durable cursor.
type AuditSink struct {
	// Name keys the sink's delivery cursor; renaming a sink delivers the whole log to it again.
	// Empty: type:address or type:path.
	Name string `mapstructure:"name" json:"name,omitempty"`
	// Type is syslog (RFC 5424 over TLS), file (JSON Lines, synced) or stdout (JSON Lines).
	Type string `mapstructure:"type" json:"type,omitempty"`
	// Address is the syslog receiver's host:port (TLS).
	Address string `mapstructure:"address" json:"address,omitempty"`
	// CAFile is a PEM bundle to trust for the receiver instead of the system roots.
	CAFile string `mapstructure:"ca_file" json:"ca_file,omitempty"`
	// CertFile and KeyFile are a client certificate for receivers that ask for one.
	CertFile string `mapstructure:"cert_file" json:"cert_file,omitempty"`
	KeyFile  string `mapstructure:"key_file" json:"key_file,omitempty"`
	// ServerName is the name the receiver's certificate must carry. Empty: Address's host.
	ServerName string `mapstructure:"server_name" json:"server_name,omitempty"`
	// Path is the file sink's file.
	Path string `mapstructure:"path" json:"path,omitempty"`
}

// name is the sink's cursor key.
func (c AuditSink) name() string {
	switch {
	case c.Name != "":
		return c.Name
	case c.Type == "syslog":
		return "syslog:" + c.Address
	case c.Type == "file":
		return "file:" + c.Path
	}
	return c.Type
}

// validate checks one sink's settings.
func (c AuditSink) validate() error {
	switch c.Type {
	case "syslog":
		if _, _, err := net.SplitHostPort(c.Address); err != nil {
			return fmt.Errorf("audit_sinks: syslog address %q: want host:port: %w", c.Address, err)
		}
		if (c.CertFile == "") != (c.KeyFile == "") {
			return errors.New("audit_sinks: syslog cert_file and key_file go together")
		}
	case "file":
		if c.Path == "" {
			return errors.New("audit_sinks: a file sink needs a path")
		}
	case "stdout":
	default:
		return fmt.Errorf("audit_sinks: type %q: want syslog, file or stdout", c.Type)
	}
	return nil
}

// validateAuditSinks checks every sink and that their names are unique.
func validateAuditSinks(sinks []AuditSink) error {
	seen := map[string]bool{}
	var errs []error
	for _, c := range sinks {
		if err := c.validate(); err != nil {
			errs = append(errs, err)
		}
		if seen[c.name()] {
			errs = append(errs, fmt.Errorf("audit_sinks: two sinks are named %q", c.name()))
		}
		seen[c.name()] = true
	}
	return errors.Join(errs...)
}

// newAuditStream builds the streamer of the configured sinks, or nil when there are none.
func (s *Server) newAuditStream() (*auditstream.Streamer, error) {
	if len(s.cfg.AuditSinks) == 0 {
		return nil, nil
	}
	var sinks []auditstream.Sink
	for _, c := range s.cfg.AuditSinks {
		k, err := openAuditSink(c)
		if err != nil {
			for _, k := range sinks {
				k.Close()
			}
			return nil, err
		}
		sinks = append(sinks, k)
	}
	return auditstream.New(s.audit, sinks, auditstream.WithLogger(s.log.With("component", "audit-stream")),
		auditstream.WithMetrics(s.registry), auditstream.WithAlertLag(s.cfg.AuditSinkAlertLag))
}

// openAuditSink opens one configured sink.
func openAuditSink(c AuditSink) (auditstream.Sink, error) {
	switch c.Type {
	case "file":
		return auditstream.OpenFile(c.name(), c.Path)
	case "stdout":
		return auditstream.NewWriterSink(c.name(), os.Stdout), nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.ServerName}
	if cfg.ServerName == "" {
		cfg.ServerName, _, _ = net.SplitHostPort(c.Address)
	}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("audit_sinks: %w", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("audit_sinks: %s holds no PEM certificate", c.CAFile)
		}
	}
	if c.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("audit_sinks: client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return auditstream.NewSyslogSink(c.name(), c.Address, cfg), nil
}
