package mdmserver

import (
	"net/http"

	"github.com/halemdm/hale/internal/problem"
	"github.com/halemdm/hale/mdmserver/applemdm"
	"github.com/halemdm/hale/mdmserver/ddm"
	"github.com/halemdm/hale/policies"
)

// newDDM builds declarative device management when Config.AppleDDM is on (nil otherwise): the
// CA, the server certificate, inventory, policies and compliance must exist.
func (s *Server) newDDM() (*ddm.Service, error) {
	if !s.cfg.AppleDDM {
		return nil, nil
	}
	return ddm.New(ddm.Deps{
		Devices: s.inventory, Policies: s.policies, Posture: s.compliance, Audit: s.audit,
		Signer: applemdm.NewProfileSigner(s.serverCert, s.ca),
		ProfileOptions: func() policies.RenderOptions {
			opts := policies.RenderOptions{Organization: "Hale"}
			if ra, _, err := s.ca.SCEPRA(); err == nil {
				// FileVault recovery keys are escrowed encrypted to the RA certificate, as on
				// the profile path.
				opts.EscrowCertificate, opts.EscrowLocation = ra.Raw, s.cfg.PublicURL
			}
			return opts
		},
		PublicURL: s.cfg.PublicURL, URLKey: s.key.Derive("ddm/profile-url"),
	}, ddm.WithLogger(s.log.With("component", "ddm")), ddm.WithClock(s.now))
}

// serveLegacyProfile serves the profiles of legacy declarations; 404 while apple_ddm is off.
func (s *Server) serveLegacyProfile(w http.ResponseWriter, r *http.Request) {
	if s.ddm == nil {
		problem.NotFound(w, r, "declarative management is off (apple_ddm)")
		return
	}
	s.ddm.ServeProfile(w, r)
}
