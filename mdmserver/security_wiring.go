package mdmserver

import (
	"github.com/halemdm/hale/mdmserver/revocation"
	"github.com/halemdm/hale/mdmserver/security"
)

// newSecurity builds the security operations on the server's services; the dispatcher, the CA
// and the compliance engine must exist.
func (s *Server) newSecurity() (*security.Service, error) {
	return security.New(security.Deps{
		Store: securityStore(s.store), Key: s.key, Devices: s.inventory, Approvals: s.approvals, Tokens: s.tokens,
		Apple: s.commands, Send: s.dispatch, Agent: s.agentQueue, Audit: s.audit, CA: s.ca, Policies: s.policies,
		Decisions: revocation.Reevaluator{Devices: s.inventory, Engine: s.compliance, Log: s.log,
			AfterChange: s.revokeAppInstances},
	}, security.WithLogger(s.log), security.WithTwoPersonRule(s.cfg.needsApproval, s.cfg.ApprovalTTL), security.WithAndroid(androidSecurity{s}))
}
