package agentapi

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/halemdm/hale/api"
	"github.com/halemdm/hale/certs"
	"github.com/halemdm/hale/enroll"
	"github.com/halemdm/hale/internal/httpjson"
	"github.com/halemdm/hale/internal/problem"
	"github.com/halemdm/hale/mdmserver/httpapi"
	"github.com/halemdm/hale/mdmserver/inventory"
)

// Enroll answers POST /agent/v1/enroll: api.AgentEnrollRequest → 201 api.AgentEnrollAnswer.
func (h *Handler) Enroll(w http.ResponseWriter, r *http.Request) {
	if !h.Gate.Admit(w, r) {
		return
	}
	req, err := enroll.DecodeAgentEnroll(r.Body)
	if err != nil {
		h.Gate.Refused(r, "invalid_request")
		h.Gate.DecodeError(w, r, err)
		return
	}
	deviceID := inventory.NewID()
	profile := certs.Profile{Kind: certs.KindAgent, DeviceID: deviceID}
	// Check the CSR before using the token, and redeem the token before signing: a CSR the CA
	// refuses (weak key, a claim to another identity) must not burn the token, and an anonymous
	// caller must not get the CA to sign anything.
	if err := certs.CheckRequest(req.CSR, profile); err != nil {
		h.Gate.Refused(r, "csr_refused")
		problem.BadRequest(w, r, "certificate request refused: "+err.Error())
		return
	}
	e, err := h.Enrollments.RedeemAgent(r.Context(), req.Token, req.Facts.OS, deviceID)
	if err != nil {
		if errors.Is(err, enroll.ErrInvalid) || errors.Is(err, enroll.ErrUnknown) || errors.Is(err, enroll.ErrExpired) ||
			errors.Is(err, enroll.ErrRevoked) || errors.Is(err, enroll.ErrUsed) || errors.Is(err, enroll.ErrWrongPlatform) {
			h.Gate.TokenRefused(w, r, err)
			return
		}
		h.internal(w, r, err)
		return
	}
	chain, err := h.CA.Sign(r.Context(), req.CSR, profile)
	if err != nil {
		// The CSR passed CheckRequest: only the CA itself can fail here (an expired intermediate).
		h.internal(w, r, err)
		return
	}
	now := time.Now().UTC()
	dev := inventory.Device{
		ID: deviceID, Platform: inventory.PlatformAgent, OS: req.Facts.OS, Owner: e.Owner, Group: e.Group,
		Serial: req.Facts.Serial, Hostname: req.Facts.Hostname, EnrolledAt: now, LastSeen: now,
		State: inventory.StateActive, Enrollment: e.ID, AgentVersion: req.Facts.AgentVersion,
	}
	dev.RecordCert(chain[0])
	d, err := h.Inventory.Create(r.Context(), dev)
	if err != nil {
		h.internal(w, r, err)
		return
	}
	details := map[string]string{"enrollment": e.ID, "owner": e.Owner, "group": e.Group, "os": d.OS}
	if e.Reusable {
		// Each use of a reusable credential is on the record with its count.
		details["reusable"] = "true"
		details["use"] = fmt.Sprintf("%d/%d", e.Uses, e.MaxDevices)
	}
	if req.Facts.AgentVersion != "" {
		details["agent_version"] = req.Facts.AgentVersion
	}
	h.Auditor.Record(r, httpapi.Event{Action: "enrollment.agent", Target: d.ID, Details: details})
	httpjson.Write(w, http.StatusCreated, api.AgentEnrollAnswer{
		DeviceID: d.ID, CertificateChain: chainPEM(chain), CACertificate: string(h.CA.RootPEM()),
		ReportInterval: DefaultReportInterval.String(),
	})
}

// Renew answers POST /agent/v1/renew (device): api.AgentRenewRequest → api.AgentRenewAnswer.
// The new certificate names the same device; the old one stays valid until it expires.
func (h *Handler) Renew(w http.ResponseWriter, r *http.Request) {
	d := httpapi.DeviceFrom(r.Context())
	var req api.AgentRenewRequest
	if !problem.DecodeJSON(w, r, 64<<10, &req) {
		return
	}
	csr, err := enroll.ParseCSR(req.CSR)
	if err != nil {
		problem.BadRequest(w, r, err.Error())
		return
	}
	chain, err := h.CA.Sign(r.Context(), csr, certs.Profile{Kind: certs.KindAgent, DeviceID: d.ID})
	if errors.Is(err, certs.ErrBadRequest) {
		problem.BadRequest(w, r, "certificate request refused: "+err.Error())
		return
	} else if err != nil {
		h.internal(w, r, err)
		return
	}
	if _, err := h.Inventory.AddCert(r.Context(), d.ID, chain[0]); err != nil {
		_ = h.CA.Revoke(r.Context(), chain[0].SerialNumber, "cessationOfOperation")
		h.internal(w, r, err)
		return
	}
	h.Auditor.Record(r, httpapi.Event{Action: "device.renew", Target: d.ID, Details: map[string]string{"serial": inventory.SerialHex(chain[0].SerialNumber)}})
	httpjson.Write(w, http.StatusOK, api.AgentRenewAnswer{CertificateChain: chainPEM(chain)})
}

// chainPEM encodes chain as PEM certificates, in order.
func chainPEM(chain []*x509.Certificate) string {
	var out []byte
	for _, c := range chain {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return string(out)
}
