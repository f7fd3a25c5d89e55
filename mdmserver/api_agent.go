package mdmserver

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/halemdm/hale/certs"
	"github.com/halemdm/hale/enroll"
	"github.com/halemdm/hale/internal/httpjson"
	"github.com/halemdm/hale/internal/problem"
	"github.com/halemdm/hale/mdmserver/agentcmd"
	"github.com/halemdm/hale/mdmserver/audit"
	"github.com/halemdm/hale/mdmserver/httpapi"
	"github.com/halemdm/hale/mdmserver/inventory"
	"github.com/halemdm/hale/mdmserver/storage"
)

// agentCommandsStore narrows the server's store to what the agent command queue uses.
func agentCommandsStore(st storage.Store) agentcmd.Store {
	return storage.Scope(st, func(tx storage.Tx) agentcmd.Tx { return tx })
}

// deviceFromContext returns the device an agent request authenticated as, or nil.
func deviceFromContext(ctx context.Context) *inventory.Device { return httpapi.DeviceFrom(ctx) }

// lastSeenResolution is how fine a device's last_seen is kept. Writing it on every agent request
// would make each long poll and nonce fetch a disk commit; once a minute is all an inventory
// view needs, and staleness is judged from report times, not from last_seen.
const lastSeenResolution = time.Minute

// requireDevice admits agent requests that present a valid, unrevoked certificate Hale issued
// to an enrolled device that is still managed. The handshake already refused foreign, expired
// and revoked certificates; this checks again (a certificate may be revoked mid-connection) and
// finds the device.
func (s *Server) requireDevice(next http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, err := s.ca.ClientIdentity(r.TLS)
		if errors.Is(err, certs.ErrNoClientCert) {
			problem.Error(w, r, http.StatusUnauthorized, "client-certificate-required",
				"agent endpoints need the device certificate from enrollment (mutual TLS)")
			return
		} else if err != nil {
			s.record(r, event{Action: "agent.auth", Outcome: audit.OutcomeDenied, Details: map[string]string{"reason": err.Error()}})
			problem.Error(w, r, http.StatusForbidden, "certificate-refused", "the client certificate is not valid: "+err.Error())
			return
		}
		d, err := s.inventory.GetByCertSerial(r.Context(), inventory.SerialHex(id.Certificate.SerialNumber))
		if errors.Is(err, inventory.ErrNotFound) || (err == nil && d.ID != id.DeviceID) {
			problem.Error(w, r, http.StatusForbidden, "unknown-device", "the certificate belongs to no enrolled device")
			return
		} else if err != nil {
			s.internal(w, r, err)
			return
		}
		// The agent API is for agents: an Apple device's identity (of this CA, so it passed the
		// handshake) must not report agent posture for its device or renew itself here.
		if kind := certs.KindOf(id.Certificate); d.Platform != inventory.PlatformAgent || (kind != 0 && kind != certs.KindAgent) {
			s.record(r, event{Action: "agent.auth", Target: d.ID, Outcome: audit.OutcomeDenied, Details: map[string]string{"reason": "not an agent identity"}})
			problem.Error(w, r, http.StatusForbidden, "not-an-agent-identity", "the certificate is not an agent's identity")
			return
		}
		switch d.State {
		case inventory.StateWiped, inventory.StateUnenrolled, inventory.StateRetired:
			problem.Error(w, r, http.StatusForbidden, "device-"+string(d.State), "the device is "+string(d.State))
			return
		}
		if now := time.Now(); now.Sub(d.LastSeen) >= lastSeenResolution {
			_ = s.inventory.Touch(r.Context(), d.ID, now)
		}
		next.ServeHTTP(w, r.WithContext(httpapi.WithDevice(r.Context(), d)))
	})
}

// agentEnrollResponse is the answer to POST /agent/v1/enroll.
type agentEnrollResponse struct {
	DeviceID         string `json:"device_id"`
	CertificateChain string `json:"certificate_chain"`
	CACertificate    string `json:"ca_certificate"`
	ReportInterval   string `json:"report_interval"`
}

// POST /agent/v1/enroll: {token, csr, facts} → 201 {device_id, certificate_chain, ...}.
func (s *Server) agentEnroll(w http.ResponseWriter, r *http.Request) {
	if !s.allowEnrollAttempt(w, r, refusedAgent) {
		return
	}
	req, err := enroll.DecodeAgentEnroll(r.Body)
	if err != nil {
		s.refuseEnrollment(r, refusedAgent, "invalid_request")
		s.enrollDecodeError(w, r, err)
		return
	}
	deviceID := inventory.NewID()
	profile := certs.Profile{Kind: certs.KindAgent, DeviceID: deviceID}
	// Check the CSR before using the token, and redeem the token before signing: a CSR the CA
	// refuses (weak key, a claim to another identity) must not burn the token, and an anonymous
	// caller must not get the CA to sign anything.
	if err := certs.CheckRequest(req.CSR, profile); err != nil {
		s.refuseEnrollment(r, refusedAgent, "csr_refused")
		problem.BadRequest(w, r, "certificate request refused: "+err.Error())
		return
	}
	e, err := s.enrollments.Redeem(r.Context(), req.Token, enroll.PlatformAgent, deviceID)
	if err != nil {
		if errors.Is(err, enroll.ErrInvalid) || errors.Is(err, enroll.ErrUnknown) || errors.Is(err, enroll.ErrExpired) ||
			errors.Is(err, enroll.ErrRevoked) || errors.Is(err, enroll.ErrUsed) || errors.Is(err, enroll.ErrWrongPlatform) {
			s.tokenRefused(w, r, refusedAgent, err)
			return
		}
		s.internal(w, r, err)
		return
	}
	chain, err := s.ca.Sign(r.Context(), req.CSR, profile)
	if err != nil {
		// The CSR passed CheckRequest: only the CA itself can fail here (an expired intermediate).
		s.internal(w, r, err)
		return
	}
	now := time.Now().UTC()
	dev := inventory.Device{
		ID: deviceID, Platform: inventory.PlatformAgent, OS: req.Facts.OS, Owner: e.Owner, Group: e.Group,
		Serial: req.Facts.Serial, Hostname: req.Facts.Hostname, EnrolledAt: now, LastSeen: now,
		State: inventory.StateActive, Enrollment: e.ID,
	}
	dev.RecordCert(chain[0])
	d, err := s.inventory.Create(r.Context(), dev)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	s.record(r, event{Action: "enrollment.agent", Target: d.ID,
		Details: map[string]string{"enrollment": e.ID, "owner": e.Owner, "group": e.Group, "os": d.OS}})
	httpjson.Write(w, http.StatusCreated, agentEnrollResponse{
		DeviceID: d.ID, CertificateChain: chainPEM(chain), CACertificate: string(s.ca.RootPEM()),
		ReportInterval: defaultReportInterval.String(),
	})
}

// defaultReportInterval is how often agents report until a policy says otherwise.
const defaultReportInterval = time.Minute

// POST /agent/v1/renew (mTLS): {"csr": PEM} → {"certificate_chain": PEM}. The new certificate
// names the same device; the old one stays valid until it expires.
func (s *Server) agentRenew(w http.ResponseWriter, r *http.Request) {
	d := deviceFromContext(r.Context())
	var req struct {
		CSR string `json:"csr"`
	}
	if !problem.DecodeJSON(w, r, 64<<10, &req) {
		return
	}
	csr, err := enroll.ParseCSR(req.CSR)
	if err != nil {
		problem.BadRequest(w, r, err.Error())
		return
	}
	chain, err := s.ca.Sign(r.Context(), csr, certs.Profile{Kind: certs.KindAgent, DeviceID: d.ID})
	if errors.Is(err, certs.ErrBadRequest) {
		problem.BadRequest(w, r, "certificate request refused: "+err.Error())
		return
	} else if err != nil {
		s.internal(w, r, err)
		return
	}
	if _, err := s.inventory.AddCert(r.Context(), d.ID, chain[0]); err != nil {
		_ = s.ca.Revoke(r.Context(), chain[0].SerialNumber, "cessationOfOperation")
		s.internal(w, r, err)
		return
	}
	s.record(r, event{Action: "device.renew", Target: d.ID, Details: map[string]string{"serial": inventory.SerialHex(chain[0].SerialNumber)}})
	httpjson.Write(w, http.StatusOK, map[string]string{"certificate_chain": chainPEM(chain)})
}

func chainPEM(chain []*x509.Certificate) string {
	var out []byte
	for _, c := range chain {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return string(out)
}

func parseSerialHex(s string) (*big.Int, bool) {
	return new(big.Int).SetString(s, 16)
}

// GET /agent/v1/nonce (mTLS): a single-use nonce for the next report.
func (s *Server) agentNonce(w http.ResponseWriter, r *http.Request) {
	nonce, exp := s.nonces.issue(deviceFromContext(r.Context()).ID)
	httpjson.Write(w, http.StatusOK, map[string]any{"nonce": nonce, "expires_at": exp.UTC()})
}

// maxLongPoll caps GET /agent/v1/commands?wait=, below the server's write timeout.
const maxLongPoll = 55 * time.Second

// GET /agent/v1/commands?wait=30s (mTLS): the device's unfinished commands, waiting up to wait
// for one to arrive, so a wipe reaches an agent within a round trip of being ordered.
func (s *Server) agentCommands(w http.ResponseWriter, r *http.Request) {
	d := deviceFromContext(r.Context())
	var wait time.Duration
	if v := r.URL.Query().Get("wait"); v != "" {
		var err error
		if wait, err = time.ParseDuration(v); err != nil || wait < 0 {
			problem.BadRequest(w, r, "wait must be a duration such as 30s")
			return
		}
		wait = min(wait, maxLongPoll)
	}
	cmds, err := s.agentQueue.Wait(r.Context(), d.ID, wait)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	if cmds == nil {
		cmds = []agentcmd.Command{}
	}
	httpjson.Write(w, http.StatusOK, map[string]any{"commands": cmds})
}

// POST /agent/v1/commands/{id}/result (mTLS): the agent's result. A selective wipe that removed
// every managed path makes the device wiped and revokes its certificates: the agent deleted its
// key, and nothing should be able to use a copy. A wipe that left any path behind (partial) or
// failed leaves the device denied as wipe_incomplete, with its identity, so that a new wipe can
// reach it.
func (s *Server) agentCommandResult(w http.ResponseWriter, r *http.Request) {
	d := deviceFromContext(r.Context())
	var res agentcmd.Result
	if !problem.DecodeJSON(w, r, maxAgentResult, &res) {
		return
	}
	// The result, its audit entry and, for a wipe that did not finish, the device's move from
	// wipe_pending to wipe_incomplete commit together.
	ctx := r.Context()
	var cmd *agentcmd.Command
	incomplete := false
	err := s.store.Update(ctx, func(tx storage.Tx) error {
		var first bool
		var err error
		cmd, first, err = agentcmd.Complete(ctx, tx.AgentCommands(), d.ID, r.PathValue("id"), res, time.Now())
		if err != nil || !first {
			return err
		}
		_, err = audit.Append(ctx, tx.Audit(), s.entry(r, event{Action: "command.result", Target: d.ID, Outcome: outcomeOf(cmd.Result.Status),
			Details: resultDetails(cmd)}))
		if err != nil || cmd.Type != agentcmd.TypeWipe || cmd.State == agentcmd.StateAcknowledged {
			return err
		}
		incomplete, err = s.markWipeIncomplete(ctx, tx, d.ID, cmd)
		return err
	})
	switch {
	case errors.Is(err, agentcmd.ErrNotFound):
		problem.NotFound(w, r, "no command "+r.PathValue("id")+" for this device")
		return
	case errors.Is(err, agentcmd.ErrInvalid):
		problem.BadRequest(w, r, err.Error())
		return
	case err != nil:
		s.internal(w, r, err)
		return
	}
	if incomplete {
		s.deviceChanged(causedBy(r.Context(), d.ID, cmd.ID), d.ID)
	}
	// Not only on the first report: if the server stopped after recording the result but before
	// finishing the wipe, the agent's resent result finishes it (finishWipe is idempotent).
	if cmd.Type == agentcmd.TypeWipe && cmd.State == agentcmd.StateAcknowledged && d.State != inventory.StateWiped {
		if err := s.finishWipe(r.Context(), d, cmd.ID); err != nil {
			s.internal(w, r, err)
			return
		}
	}
	httpjson.Write(w, http.StatusOK, map[string]bool{"ok": true})
}

// maxAgentResult bounds a command result's body: a wipe lists up to agentcmd.MaxResultPaths
// paths with their outcomes.
const maxAgentResult = 1 << 20

// resultDetails are the audit details of an agent's result: for a wipe, how many paths had each
// outcome and, bounded, every path that was not removed or absent, with its reason.
func resultDetails(cmd *agentcmd.Command) map[string]string {
	res := cmd.Result
	det := map[string]string{"command_id": cmd.ID, "type": cmd.Type, "status": res.Status, "state": cmd.State,
		"removed": strconv.Itoa(len(res.Removed))}
	if len(res.Paths) == 0 {
		return det
	}
	n := res.Count()
	for _, o := range []string{agentcmd.OutcomeRemoved, agentcmd.OutcomeAbsent, agentcmd.OutcomeRefused, agentcmd.OutcomeFailed} {
		det[o] = strconv.Itoa(n[o])
	}
	var left []string
	size := 0
	for _, p := range res.Paths {
		if p.Outcome != agentcmd.OutcomeRefused && p.Outcome != agentcmd.OutcomeFailed {
			continue
		}
		item := p.Outcome + " " + p.Path + ": " + p.Reason
		if size+len(item) > maxLeftBehind {
			left = append(left, fmt.Sprintf("and %d more (see the command)", n[agentcmd.OutcomeRefused]+n[agentcmd.OutcomeFailed]-len(left)))
			break
		}
		size += len(item)
		left = append(left, item)
	}
	if len(left) > 0 {
		det["left_behind"] = strings.Join(left, "; ")
	}
	return det
}

// maxLeftBehind bounds the paths a wipe left behind as listed in its audit entry.
const maxLeftBehind = 4096

func outcomeOf(status string) string {
	if status == agentcmd.ResultDone {
		return audit.OutcomeOK
	}
	return audit.OutcomeError
}

// finishWipe marks a device wiped after its wipe (commandID) was acknowledged, and revokes its
// certificates first: the device deleted its key, and nothing should be able to use a copy. The
// state, the end of wipe_pending and the audit entry commit together; it is idempotent, so a
// crash anywhere is finished by the next call (the agent's resent result, or the start-up pass).
func (s *Server) finishWipe(ctx context.Context, d *inventory.Device, commandID string) error {
	if err := s.revokeDeviceCerts(ctx, d, "cessationOfOperation"); err != nil {
		return err
	}
	err := s.store.Update(ctx, func(tx storage.Tx) error {
		// The device becomes wiped and loses its unfinished wipe, pending or incomplete.
		wiped, err := inventory.FinishWipe(ctx, tx.Inventory(), d.ID, time.Now())
		if err != nil || !wiped {
			return err
		}
		e := auditEntry("device:"+d.ID, "device.wiped", d.ID, map[string]string{
			"command_id": commandID, "revoked_certificates": strconv.Itoa(len(d.CertSerials))})
		e.Role = "device"
		_, err = audit.Append(ctx, tx.Audit(), e)
		return err
	})
	if err != nil {
		return err
	}
	s.deviceChanged(causedBy(ctx, d.ID, commandID), d.ID)
	return nil
}
