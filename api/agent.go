package api

import (
	"time"

	"github.com/halemdm/hale/policies"
)

// AgentFacts are what an agent says about its host at enrollment. They are self-reported:
// useful for inventory, never for trust decisions.
type AgentFacts struct {
	Hostname string `json:"hostname"`
	// OS is windows, linux or macos.
	OS string `json:"os"`
	// OSVersion is the OS's version, such as "10.0.22631", "6.8.0" or "14.5".
	OSVersion string `json:"os_version"`
	Serial    string `json:"serial"`
	// Platform is the finer platform name, such as the Linux distribution ("ubuntu").
	Platform string `json:"platform"`
	// AgentVersion is mdmagent's own version ("v1.4.0"; "devel" for a build without one).
	AgentVersion string `json:"agent_version,omitempty"`
}

// AgentEnrollRequest is the body of POST /agent/v1/enroll: a one-time enrollment token, the
// agent's certificate request and its facts.
type AgentEnrollRequest struct {
	Token string `json:"token"`
	// CSR is one PEM CERTIFICATE REQUEST block.
	CSR   string     `json:"csr"`
	Facts AgentFacts `json:"facts"`
}

// AgentEnrollAnswer is the answer to POST /agent/v1/enroll: the device's ID, its certificate
// and the CA to pin.
type AgentEnrollAnswer struct {
	DeviceID string `json:"device_id"`
	// CertificateChain is PEM certificates, leaf first.
	CertificateChain string `json:"certificate_chain"`
	// CACertificate is the root CA, PEM.
	CACertificate string `json:"ca_certificate"`
	// ReportInterval is how often to report until a policy says otherwise, such as "1m0s".
	ReportInterval string `json:"report_interval"`
}

// AgentRenewRequest is the body of POST /agent/v1/renew.
type AgentRenewRequest struct {
	// CSR is one PEM CERTIFICATE REQUEST block.
	CSR string `json:"csr"`
}

// AgentRenewAnswer is the answer to POST /agent/v1/renew: a new certificate naming the same
// device.
type AgentRenewAnswer struct {
	// CertificateChain is PEM certificates, leaf first.
	CertificateChain string `json:"certificate_chain"`
}

// AgentNonce is the answer to GET /agent/v1/nonce: a single-use nonce for the next report.
// (The fields are in the order the server has always sent them.)
type AgentNonce struct {
	ExpiresAt time.Time `json:"expires_at"`
	Nonce     string    `json:"nonce"`
}

// CollectorError is one posture collector's failure, as a report carries it.
type CollectorError struct {
	Collector string `json:"collector"`
	Error     string `json:"error"`
}

// AgentReport is the body of POST /agent/v1/report: a posture the agent collected, with the
// single-use nonce it fetched for it.
type AgentReport struct {
	Nonce string `json:"nonce"`
	// Sequence increases with every report the device makes.
	Sequence int64 `json:"sequence"`
	// CollectedAt must be within the last 24 hours.
	CollectedAt time.Time `json:"collected_at"`
	// Posture's claims must all have provenance agent.
	Posture *policies.Posture `json:"posture"`
	// Errors are the collectors that failed, at most 64.
	Errors []CollectorError `json:"errors,omitempty"`
	// AgentVersion is mdmagent's version; the inventory keeps the last one reported, so an
	// upgrade shows on the next report.
	AgentVersion string `json:"agent_version,omitempty"`
}

// AgentReportAnswer is the answer to POST /agent/v1/report. (The fields are in the order the
// server has always sent them.)
type AgentReportAnswer struct {
	Accepted  bool `json:"accepted"`
	Compliant bool `json:"compliant"`
	// NextReportIn is when to report again, such as "1m0s".
	NextReportIn string `json:"next_report_in"`
	// Nonce is the nonce for the next report.
	Nonce string `json:"nonce"`
	// PolicyETag is the ETag of the device's policy, empty when none applies: when it is not
	// the agent's, the agent fetches GET /agent/v1/policy.
	PolicyETag string `json:"policy_etag"`
	// InGrace, GraceUntil and Reasons tell the agent of a noncompliant device what to show
	// its user: the deadline and what to fix (reason codes of the remediation catalog). WarnAt
	// is when the policy warns again before the deadline (grace.warn_before).
	InGrace    bool      `json:"in_grace,omitempty"`
	GraceUntil time.Time `json:"grace_until,omitzero"`
	WarnAt     time.Time `json:"warn_at,omitzero"`
	Reasons    []string  `json:"reasons,omitempty"`
}

// AgentPolicy is the answer to GET /agent/v1/policy: the part of the device's policy an agent
// acts on, for its own platform. It is policies.AgentPolicy, which the agent and the server
// already share.
type AgentPolicy = policies.AgentPolicy

// AgentResultAnswer is the answer to POST /agent/v1/commands/{id}/result: the server recorded
// the result.
type AgentResultAnswer struct {
	OK bool `json:"ok"`
}
