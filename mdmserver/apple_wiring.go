package mdmserver

import (
	"context"

	"github.com/halemdm/hale/mdmserver/applemdm"
	"github.com/halemdm/hale/mdmserver/inventory"
)

// newApple builds Apple MDM on the server's services; the dispatcher and the CA must exist.
func (s *Server) newApple() (*applemdm.Service, error) {
	return applemdm.New(applemdm.Deps{
		MDMStore: s.mdmStore, Store: appleStore(s.store), Results: resultStore(s.store),
		Inventory: s.inventory, Commands: s.commands, Dispatch: s.dispatch, Compliance: s.compliance,
		Enrollments: s.enrollments, PushCerts: s.pushCerts, Wipes: wipeFinisher{s}, Refusals: s.enrollGate,
		Audit: s.audit, CA: s.ca, ServerCert: s.serverCert, VerifyExtraCA: s.verifyExtraDeviceCA,
		PublicURL: s.cfg.PublicURL, CommandTTL: s.cfg.CommandTTL, DDM: s.ddm, Sealer: s.key,
	}, applemdm.WithLogger(s.log), applemdm.WithClock(s.now))
}

// wipeFinisher finishes the wipes Apple devices acknowledge with the server's finishWipe.
type wipeFinisher struct{ s *Server }

func (f wipeFinisher) FinishWipe(ctx context.Context, d *inventory.Device, commandID string) error {
	return f.s.security.FinishWipe(ctx, d, commandID)
}
