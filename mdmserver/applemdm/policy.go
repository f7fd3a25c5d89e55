package applemdm

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"slices"
	"sync"

	"github.com/halemdm/hale/certs"
	"github.com/halemdm/hale/enroll"
	"github.com/halemdm/hale/mdmserver/commands"
	"github.com/halemdm/hale/mdmserver/compliance"
	"github.com/halemdm/hale/mdmserver/ddm"
	"github.com/halemdm/hale/mdmserver/inventory"
	"github.com/halemdm/hale/policies"
)

// deliverPolicy sends an Apple device the profiles of its effective policy when they differ from
// what it was last sent: InstallProfile for each rendered profile, RemoveProfile for profiles no
// longer wanted, then ProfileList and Restrictions so the evaluation sees what is really
// installed and in force.
func (s *Service) deliverPolicy(ctx context.Context, d *inventory.Device) {
	if d.Platform != inventory.PlatformApple || d.EnrollmentID == "" || d.OS == "" {
		return
	}
	// One delivery per device at a time: two at once (the first TokenUpdate's and the
	// DeviceInformation result's) would both read the old record and both send.
	mu, _ := s.deliveryLocks.LoadOrStore(d.ID, new(sync.Mutex))
	mu.(*sync.Mutex).Lock()
	defer mu.(*sync.Mutex).Unlock()
	if s.d.DDM != nil && s.d.DDM.Serves(d) {
		s.deliverDeclarations(ctx, d)
		return
	}
	sp, err := s.d.Compliance.Policies().Effective(d)
	if err != nil {
		s.log.ErrorContext(ctx, "effective policy", "device_id", d.ID, "err", err)
		return
	}
	// What the device was sent before; an unreadable record counts as nothing sent, so the
	// device is sent its policy again.
	var prev compliance.Delivery
	_ = s.d.Store.View(ctx, func(tx Tx) error {
		var err error
		prev, _, err = tx.Compliance().Delivery(ctx, d.ID)
		return err
	})
	next := compliance.Delivery{Platform: d.OS}
	var profiles []policies.Profile
	if sp != nil {
		next.Policy, next.Version = sp.Name, sp.Version
		opts := policies.RenderOptions{Organization: "Hale", Signer: profileSigner{s}}
		if ra, _, err := s.d.CA.SCEPRA(); err == nil {
			// FileVault recovery keys are escrowed encrypted to the RA certificate, whose
			// (sealed) key only the server holds.
			opts.EscrowCertificate, opts.EscrowLocation = ra.Raw, s.d.PublicURL
		}
		if profiles, err = policies.RenderApple(sp.Policy, policies.Platform(d.OS), opts); err != nil {
			s.log.ErrorContext(ctx, "rendering Apple profiles", "device_id", d.ID, "policy", sp.Name, "err", err)
			return
		}
		for _, p := range profiles {
			next.Identifiers = append(next.Identifiers, p.Identifier)
		}
	}
	if (prev.Policy == next.Policy && prev.Version == next.Version && prev.Platform == next.Platform) ||
		(len(profiles) == 0 && len(prev.Identifiers) == 0) {
		return
	}
	by := "system:policy"
	for _, p := range profiles {
		if _, err := s.d.Dispatch.Enqueue(ctx, d.EnrollmentID, commands.Command{RequestType: "InstallProfile",
			Fields: map[string]any{"Payload": p.Bytes}}, by); err != nil {
			s.log.ErrorContext(ctx, "queue InstallProfile", "device_id", d.ID, "profile", p.Identifier, "err", err)
			return
		}
	}
	for _, id := range prev.Identifiers {
		if !slices.Contains(next.Identifiers, id) {
			if _, err := s.d.Dispatch.Enqueue(ctx, d.EnrollmentID, commands.Command{RequestType: "RemoveProfile",
				Fields: map[string]any{"Identifier": id}}, by); err != nil {
				s.log.ErrorContext(ctx, "queue RemoveProfile", "device_id", d.ID, "profile", id, "err", err)
			}
		}
	}
	for _, rt := range []string{"ProfileList", "Restrictions"} {
		if _, err := s.d.Dispatch.Enqueue(ctx, d.EnrollmentID, commands.Command{RequestType: rt}, by); err != nil {
			s.log.ErrorContext(ctx, "queue "+rt, "device_id", d.ID, "err", err)
		}
	}
	err = s.d.Store.Update(ctx, func(tx Tx) error {
		return tx.Compliance().PutDelivery(ctx, d.ID, next)
	})
	if err != nil {
		s.log.ErrorContext(ctx, "recording policy delivery", "device_id", d.ID, "err", err)
	}
}

// deliverDeclarations sends a device on declarative management the DeclarativeManagement
// command, carrying its new declarations token, when its declarations changed since it was last
// told (a policy or assignment change, or its first delivery); the device then syncs them.
func (s *Service) deliverDeclarations(ctx context.Context, d *inventory.Device) {
	set, err := s.d.DDM.Declarations(d)
	if err != nil {
		s.log.ErrorContext(ctx, "rendering declarations", "device_id", d.ID, "err", err)
		return
	}
	var prev compliance.Delivery
	_ = s.d.Store.View(ctx, func(tx Tx) error {
		var err error
		prev, _, err = tx.Compliance().Delivery(ctx, d.ID)
		return err
	})
	if prev.DeclarationsToken == set.Token {
		return
	}
	next := compliance.Delivery{Platform: d.OS, Identifiers: prev.Identifiers, DeclarationsToken: set.Token}
	if sp, err := s.d.Compliance.Policies().Effective(d); err == nil && sp != nil {
		next.Policy, next.Version = sp.Name, sp.Version
	}
	data, err := ddm.CommandData(set)
	if err != nil {
		s.log.ErrorContext(ctx, "encoding declaration tokens", "device_id", d.ID, "err", err)
		return
	}
	if _, err := s.d.Dispatch.Enqueue(ctx, d.EnrollmentID, commands.Command{RequestType: "DeclarativeManagement",
		Fields: map[string]any{"Data": data}}, "system:policy"); err != nil {
		s.log.ErrorContext(ctx, "queue DeclarativeManagement", "device_id", d.ID, "err", err)
		return
	}
	if err := s.d.Store.Update(ctx, func(tx Tx) error { return tx.Compliance().PutDelivery(ctx, d.ID, next) }); err != nil {
		s.log.ErrorContext(ctx, "recording declarations delivery", "device_id", d.ID, "err", err)
	}
}

// DeliverPolicies delivers effective policies to every Apple device (after a policy or
// assignment change), from commands.DeliveryWorkers goroutines: their commands' durable writes
// share commits and the push queue pushes each device once.
func (s *Service) DeliverPolicies(ctx context.Context) {
	// IDs first, then each device read afresh: a long walk of the inventory must not hold a
	// read transaction while the workers write.
	var ids []string
	err := s.d.Inventory.ForEach(ctx, func(d *inventory.Device) error {
		if d.Platform == inventory.PlatformApple && d.State != inventory.StateWiped && d.State != inventory.StateUnenrolled && d.State != inventory.StateRetired {
			ids = append(ids, d.ID)
		}
		return nil
	})
	if err != nil && !errors.Is(err, context.Canceled) {
		s.log.ErrorContext(ctx, "delivering policies", "err", err)
		return
	}
	work := make(chan string)
	var wg sync.WaitGroup
	for range min(commands.DeliveryWorkers, len(ids)) {
		wg.Go(func() {
			for id := range work {
				if d, err := s.d.Inventory.Get(ctx, id); err == nil {
					s.deliverPolicy(ctx, d)
				}
			}
		})
	}
	for _, id := range ids {
		if ctx.Err() != nil {
			break
		}
		work <- id
	}
	close(work)
	wg.Wait()
}

// NewProfileSigner signs configuration profiles with the server's certificate, chained to
// Hale's intermediate (the legacy profiles declarative management hosts).
func NewProfileSigner(sc *certs.ServerCert, ca *certs.Authority) policies.ProfileSigner {
	return profileSigner{&Service{d: Deps{ServerCert: sc, CA: ca}}}
}

// profileSigner signs configuration profiles with the server's certificate, chained to Hale's
// intermediate, as Apple devices expect of a managed profile.
type profileSigner struct{ s *Service }

// Sign signs profile (policies.ProfileSigner).
func (ps profileSigner) Sign(profile []byte) ([]byte, error) {
	tlsCert, err := ps.s.d.ServerCert.GetCertificate(nil)
	if err != nil {
		return nil, err
	}
	key, ok := tlsCert.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, errors.New("server key cannot sign")
	}
	return enroll.SignProfile(profile, tlsCert.Leaf, key, []*x509.Certificate{ps.s.d.CA.Intermediate()})
}
