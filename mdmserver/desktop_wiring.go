package mdmserver

import "github.com/halemdm/hale/mdmserver/agentapi"

// newAgentAppTokens builds POST /agent/v1/app-token: key-bound posture tokens for the desktop
// apps an agent vouches for (issue 22), on the same decision index, keys, issuer and lifetime as
// every other posture token, so a wipe, lock or loss of compliance refuses the next one at once.
func (s *Server) newAgentAppTokens() *agentapi.AppTokens {
	return &agentapi.AppTokens{
		Decisions: s.index, Signer: s.keys, Issuer: s.cfg.PublicURL, TTL: s.cfg.PostureTokenTTL, Now: s.now, Log: s.log,
	}
}
