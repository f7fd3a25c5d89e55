package mdmserver

import (
	"github.com/halemdm/hale/mdmserver/accessapi"
	"github.com/halemdm/hale/mdmserver/agentapi"
	"github.com/halemdm/hale/posture"
)

// newAgentAPI builds the agent API's handler on the server's services; the CA, the security
// service and the compliance engine must exist.
func (s *Server) newAgentAPI() *agentapi.Handler {
	return &agentapi.Handler{
		CA: s.ca, Inventory: s.inventory, Enrollments: s.enrollments, Gate: s.enrollGate.Endpoint("agent"),
		Queue: s.agentQueue, Results: s.security, Compliance: s.compliance, Policies: s.policies,
		Nonces: agentapi.NewNonces(), Auditor: s.auditor(), Log: s.log,
	}
}

// newAccessAPI builds the access API's check and token handler; the signing keys, the CA and
// the extra device CAs must be loaded.
func (s *Server) newAccessAPI() *accessapi.Handler {
	return &accessapi.Handler{
		Index: s.index, CA: s.ca, VerifyExtraCA: s.verifyExtraDeviceCA,
		Tokens: posture.NewVerifier(s.keys, posture.WithIssuer(s.cfg.PublicURL)), Signer: s.keys,
		Issuer: s.cfg.PublicURL, TokenTTL: s.cfg.PostureTokenTTL, Now: s.now, Log: s.log, HelpDesk: s.cfg.helpDesk(),
	}
}
