package mdmserver

import (
	"context"
	"errors"
	"fmt"

	"github.com/halemdm/hale/api"
	"github.com/halemdm/hale/mdmserver/appapi"
	"github.com/halemdm/hale/mdmserver/appattest"
	"github.com/halemdm/hale/mdmserver/appinstances"
	"github.com/halemdm/hale/mdmserver/commands"
	"github.com/halemdm/hale/mdmserver/inventory"
	"github.com/halemdm/hale/mdmserver/playintegrity"
)

// appVerifiers builds the App Attest and Play Integrity verifiers the configuration asks for;
// a platform left unconfigured is nil, and a half-configured one an error.
func (c *Config) appVerifiers() (*appattest.Verifier, *playintegrity.Verifier, error) {
	var ios *appattest.Verifier
	var android *playintegrity.Verifier
	var errs []error
	switch {
	case c.AppIOSTeamID == "" && c.AppIOSBundleID == "":
	case c.AppIOSTeamID == "" || c.AppIOSBundleID == "":
		errs = append(errs, errors.New("app_ios_team_id and app_ios_bundle_id: set both or neither"))
	default:
		opts := []appattest.Option{}
		if c.AppIOSEnvironment != "" {
			opts = append(opts, appattest.WithEnvironment(appattest.Environment(c.AppIOSEnvironment)))
		}
		if c.AppIOSRootsFile != "" {
			pool, err := readCertPool("app_ios_roots_file", c.AppIOSRootsFile)
			if err != nil {
				errs = append(errs, err)
			}
			opts = append(opts, appattest.WithRoots(pool))
		}
		var err error
		if ios, err = appattest.New(c.AppIOSTeamID, c.AppIOSBundleID, opts...); err != nil {
			errs = append(errs, fmt.Errorf("app_ios_*: %w", err))
		}
	}
	if c.AppAndroidPackage != "" || c.AppAndroidDecryptKey != "" || c.AppAndroidVerifyKey != "" {
		var err error
		android, err = playintegrity.New(c.AppAndroidPackage, c.AppAndroidDecryptKey, c.AppAndroidVerifyKey,
			playintegrity.WithCertificateDigests(c.AppAndroidCertDigests...))
		if err != nil {
			errs = append(errs, fmt.Errorf("app_android_*: %w", err))
		}
		if len(c.AppAndroidCertDigests) == 0 {
			errs = append(errs, errors.New("app_android_certificate_digests: list the app's signing certificate digests"))
		}
	}
	return ios, android, errors.Join(errs...)
}

// newAppAPI builds the app instance service and its routes; the inventory must exist.
func (s *Server) newAppAPI() (*appinstances.Service, *appapi.Handler, error) {
	ios, android, err := s.cfg.appVerifiers()
	if err != nil {
		return nil, nil, err
	}
	svc, err := appinstances.New(appinstances.Deps{
		Store: appInstancesStore(s.store), Devices: s.inventory, IOS: ios, Android: android,
		Nonces: appinstances.NewNonces(s.now), Posture: s.compliance, Now: s.now, Log: s.log.With("component", "app"),
	})
	if err != nil {
		return nil, nil, err
	}
	return svc, &appapi.Handler{Service: svc, Devices: s.inventory, Log: s.log, Deliver: s.deliverAppConfig,
		Gate: s.enrollGate.Endpoint("app"), Tokens: appapi.Tokens{
			Decisions: s.index, Signer: s.keys, Issuer: s.cfg.PublicURL, TTL: s.cfg.PostureTokenTTL, Now: s.now,
			HelpDesk: s.cfg.helpDesk(),
		}}, nil
}

// deliverAppConfig sends the messaging app on d its managed app configuration: the server's
// URL and a binding token, by a Settings command (ApplicationConfiguration for the app's
// bundle ID), which the device runs at its next check-in.
func (s *Server) deliverAppConfig(ctx context.Context, d *inventory.Device, token, requestedBy string) (string, error) {
	rec, err := s.dispatch.Send(ctx, d.EnrollmentID, commands.Command{RequestType: "Settings", Fields: map[string]any{
		"Settings": []any{map[string]any{
			"Item": "ApplicationConfiguration", "Identifier": s.cfg.AppIOSBundleID,
			"Configuration": map[string]any{api.AppConfigServerURL: s.cfg.PublicURL, api.AppConfigBindingToken: token},
		}},
	}}, requestedBy)
	if err != nil {
		return "", err
	}
	return rec.UUID, nil
}

// liveAppInstances lists the IDs of deviceID's app instances not revoked yet, for the
// session-revoked SETs that name them; a failure to read them is logged and lists none (the
// device's own SET still goes out, and it covers the instances' tokens).
func (s *Server) liveAppInstances(ctx context.Context, deviceID string) []string {
	if s.appInstances == nil {
		return nil
	}
	ins, err := s.appInstances.Instances(ctx, deviceID)
	if err != nil {
		s.log.ErrorContext(ctx, "listing app instances for revocation events failed", "device_id", deviceID, "err", err)
		return nil
	}
	var out []string
	for _, in := range ins {
		if !in.Revoked() {
			out = append(out, in.ID)
		}
	}
	return out
}

// revokeAppInstances revokes the app instances of d when a security operation (wipe,
// unenroll) ended it. A failure is logged: the instances are refused at their next use anyway,
// because the service checks the device's state there too.
func (s *Server) revokeAppInstances(ctx context.Context, d *inventory.Device) {
	reason := appinstances.RevokeReason(d)
	if reason == "" || s.appInstances == nil {
		return
	}
	if err := s.appInstances.RevokeDevice(ctx, d.ID, reason); err != nil {
		s.log.ErrorContext(ctx, "revoking app instances failed", "device_id", d.ID, "err", err)
	}
}
