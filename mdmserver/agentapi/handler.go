// Package agentapi holds the HTTP handlers of the agent API (/agent/v1): enrollment by one-time
// token, and, for a device that authenticates with the certificate it got there (mutual TLS),
// certificate renewal, report nonces, posture reports, its policy, its commands and their
// results. A handler decodes the request into package api's wire types, calls the service that
// does the work, and encodes package api's answer. Which routes need a device is the route
// table's business (package mdmserver's routes.go): it wraps them in RequireDevice.
package agentapi

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"log/slog"
	"math/big"
	"net/http"
	"time"

	"github.com/halemdm/hale/certs"
	"github.com/halemdm/hale/enroll"
	"github.com/halemdm/hale/internal/problem"
	"github.com/halemdm/hale/mdmserver/agentcmd"
	"github.com/halemdm/hale/mdmserver/audit"
	"github.com/halemdm/hale/mdmserver/compliance"
	"github.com/halemdm/hale/mdmserver/httpapi"
	"github.com/halemdm/hale/mdmserver/inventory"
	"github.com/halemdm/hale/policies"
)

// Handler serves the agent API. Its methods are http.HandlerFuncs; those of an enrolled device
// must be wrapped in RequireDevice, which finds the device they act for. Every field must be
// set.
type Handler struct {
	// CA identifies devices by their certificates and issues them.
	CA CA
	// Inventory holds the device records.
	Inventory Inventory
	// Enrollments redeems enrollment tokens.
	Enrollments Enrollments
	// Gate slows token guessing on the anonymous enrollment endpoint.
	Gate Gate
	// Queue delivers the devices' commands.
	Queue Queue
	// Results records what agents report of their commands.
	Results Results
	// Compliance evaluates the reports.
	Compliance Compliance
	// Policies finds a device's policy.
	Policies Policies
	// Nonces issues the reports' single-use nonces.
	Nonces *Nonces
	// Auditor puts the agents' actions and refusals on the audit record.
	Auditor httpapi.Auditor
	// Log gets the internal errors.
	Log *slog.Logger
}

// CA is the certificate authority, as the agent API uses it (a *certs.Authority).
type CA interface {
	// ClientIdentity checks the connection's client certificate and names its device; it is
	// certs.ErrNoClientCert when there is none.
	ClientIdentity(cs *tls.ConnectionState) (*certs.Identity, error)
	// Sign issues a certificate for csr under profile p and returns its chain, leaf first.
	Sign(ctx context.Context, csr *x509.CertificateRequest, p certs.Profile) ([]*x509.Certificate, error)
	// Revoke revokes the certificate with serial.
	Revoke(ctx context.Context, serial *big.Int, reason string) error
	// RootPEM is the root CA certificate an agent pins.
	RootPEM() []byte
}

// Inventory is the device records, as the agent API uses them (an *inventory.Service).
type Inventory interface {
	GetByCertSerial(ctx context.Context, serial string) (*inventory.Device, error)
	Create(ctx context.Context, d inventory.Device) (*inventory.Device, error)
	AddCert(ctx context.Context, id string, cert *x509.Certificate) (*inventory.Device, error)
	Touch(ctx context.Context, id string, at time.Time) error
	SetAgentVersion(ctx context.Context, id, version string) (*inventory.Device, error)
}

// Enrollments redeems the tokens agents enroll with, one-time or reusable (an *enroll.Service).
type Enrollments interface {
	RedeemAgent(ctx context.Context, token, os, deviceID string) (*enroll.Enrollment, error)
}

// Gate is the server's guard of its anonymous enrollment endpoints, which it shares with Apple
// enrollment: a rate limit per source address and a tally of refusals, audited per source and
// window rather than one entry each, so a flood of guesses cannot fill the audit log.
type Gate interface {
	// Admit reports whether r's source may try to enroll now; when it may not, Admit has
	// answered (429) and counted the refusal.
	Admit(w http.ResponseWriter, r *http.Request) bool
	// Refused counts r as refused for reason (invalid_request, csr_refused).
	Refused(r *http.Request, reason string)
	// TokenRefused counts r as refused for the enrollment token error err and answers 401.
	TokenRefused(w http.ResponseWriter, r *http.Request, err error)
	// DecodeError answers an enrollment body that enroll could not decode (400 or 413).
	DecodeError(w http.ResponseWriter, r *http.Request, err error)
}

// Queue hands agents their commands (an *agentcmd.Queue).
type Queue interface {
	// Wait returns the device's unfinished commands, waiting up to wait for one to arrive.
	Wait(ctx context.Context, deviceID string, wait time.Duration) ([]agentcmd.Command, error)
}

// Results records an agent's command results: the service that owns what a result means for
// the device (a *security.Service: a finished wipe makes the device wiped and revokes its
// certificates, one that left data behind makes it wipe_incomplete).
type Results interface {
	// AgentResult records res, reported by device d for its command commandID, and its audit
	// entry, whose actor and request are actor's (an entry with no action yet). A result
	// reported again changes nothing, but finishes a wipe that was acknowledged and not yet
	// finished. It returns agentcmd.ErrNotFound or agentcmd.ErrInvalid for a command or result
	// it refuses.
	AgentResult(ctx context.Context, actor audit.Entry, d *inventory.Device, commandID string, res agentcmd.Result) error
}

// Compliance evaluates agent reports (a *compliance.Engine).
type Compliance interface {
	// IngestAgentReport stores the device's posture p, reported at at, and returns its verdict.
	IngestAgentReport(ctx context.Context, deviceID string, p *policies.Posture, at time.Time) (policies.Verdict, error)
}

// Policies finds the policy that applies to a device (a *compliance.PolicyStore).
type Policies interface {
	// Effective returns the device's policy, or nil when none applies.
	Effective(d *inventory.Device) (*compliance.StoredPolicy, error)
}

// DefaultReportInterval is how often agents report until a policy says otherwise.
const DefaultReportInterval = time.Minute

// RequireDevice admits agent requests that present a valid, unrevoked certificate Hale issued
// to an enrolled device that is still managed, and gives next the device (httpapi.DeviceFrom).
// The handshake already refused foreign, expired and revoked certificates; this checks again (a
// certificate may be revoked mid-connection) and finds the device.
func (h *Handler) RequireDevice(next http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, err := h.CA.ClientIdentity(r.TLS)
		if errors.Is(err, certs.ErrNoClientCert) {
			problem.Error(w, r, http.StatusUnauthorized, "client-certificate-required",
				"agent endpoints need the device certificate from enrollment (mutual TLS)")
			return
		} else if err != nil {
			h.Auditor.Record(r, httpapi.Event{Action: "agent.auth", Outcome: audit.OutcomeDenied, Details: map[string]string{"reason": err.Error()}})
			problem.Error(w, r, http.StatusForbidden, "certificate-refused", "the client certificate is not valid: "+err.Error())
			return
		}
		d, err := h.Inventory.GetByCertSerial(r.Context(), inventory.SerialHex(id.Certificate.SerialNumber))
		if errors.Is(err, inventory.ErrNotFound) || (err == nil && d.ID != id.DeviceID) {
			problem.Error(w, r, http.StatusForbidden, "unknown-device", "the certificate belongs to no enrolled device")
			return
		} else if err != nil {
			h.internal(w, r, err)
			return
		}
		// The agent API is for agents: an Apple device's identity (of this CA, so it passed the
		// handshake) must not report agent posture for its device or renew itself here.
		if kind := certs.KindOf(id.Certificate); d.Platform != inventory.PlatformAgent || (kind != 0 && kind != certs.KindAgent) {
			h.Auditor.Record(r, httpapi.Event{Action: "agent.auth", Target: d.ID, Outcome: audit.OutcomeDenied, Details: map[string]string{"reason": "not an agent identity"}})
			problem.Error(w, r, http.StatusForbidden, "not-an-agent-identity", "the certificate is not an agent's identity")
			return
		}
		switch d.State {
		case inventory.StateWiped, inventory.StateUnenrolled, inventory.StateRetired:
			problem.Error(w, r, http.StatusForbidden, "device-"+string(d.State), "the device is "+string(d.State))
			return
		}
		if now := time.Now(); now.Sub(d.LastSeen) >= inventory.LastSeenResolution {
			_ = h.Inventory.Touch(r.Context(), d.ID, now)
		}
		next.ServeHTTP(w, r.WithContext(httpapi.WithDevice(r.Context(), d)))
	})
}

// internal logs err and answers a generic 500 (httpapi.Internal).
func (h *Handler) internal(w http.ResponseWriter, r *http.Request, err error) {
	httpapi.Internal(h.Log, w, r, err)
}
