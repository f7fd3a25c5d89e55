package main

import (
	"fmt"
	"io"
	"maps"
	"net/url"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/halemdm/hale/api"
)

// appCommands are `devices app-binding` and `devices app-instances`: binding the organisation's
// messaging app to a device, and what its instances report.
func (a *app) appCommands() []*cobra.Command {
	var ttl string
	var deliver bool
	binding := &cobra.Command{
		Use:   "app-binding DEVICE [--ttl 24h] [--deliver]",
		Short: "Issue a one-time token that binds the messaging app's next registration to the device",
		Long: `app-binding issues a one-time binding token for DEVICE (an ID or an Apple UDID). Give it to
the messaging app on that device (on a managed iPhone Hale delivers it in the app's managed app
configuration, with --deliver); the app registers with it and an App Attest or Play Integrity
attestation. The token is shown once and expires after --ttl (at most 720h).`,
		Args: cobra.ExactArgs(1),
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			var body any
			if ttl != "" || deliver {
				body = api.AppBindingRequest{TTL: ttl, Deliver: deliver}
			}
			return show(a, cmd.Context(), "POST", "/api/v1/devices/"+url.PathEscape(args[0])+"/app-bindings", body,
				func(w io.Writer, b api.AppBindingAnswer) error {
					if _, err := fmt.Fprintf(w, "binding token for %s (shown once, expires %s):\n%s\n", b.DeviceID, ts(b.ExpiresAt), b.Token); err != nil {
						return err
					}
					if b.CommandID != "" {
						_, err := fmt.Fprintf(w, "delivered as the app's managed app configuration by command %s\n", b.CommandID)
						return err
					}
					return nil
				})
		}),
	}
	binding.Flags().StringVar(&ttl, "ttl", "", "how long the token may be used (server default 24h)")
	binding.Flags().BoolVar(&deliver, "deliver", false, "send it to the app on a managed iPhone or iPad as its managed app configuration")

	instances := &cobra.Command{
		Use:   "app-instances DEVICE",
		Short: "List the messaging app instances bound to a device, with their claims",
		Args:  cobra.ExactArgs(1),
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			return show(a, cmd.Context(), "GET", "/api/v1/devices/"+url.PathEscape(args[0])+"/app-instances", nil,
				func(w io.Writer, l api.AppInstances) error {
					rows := make([][]string, 0, len(l.Instances))
					for _, in := range l.Instances {
						state := "active"
						if in.RevokedAt != nil {
							state = "revoked: " + in.RevokedReason
						}
						last := "never"
						if in.LastReportAt != nil {
							last = ts(*in.LastReportAt)
						}
						rows = append(rows, []string{in.ID, in.Platform, state, last, claimsText(in.Claims)})
					}
					return table(w, []string{"INSTANCE", "PLATFORM", "STATE", "LAST REPORT", "CLAIMS"}, rows)
				})
		}),
	}
	return []*cobra.Command{binding, instances}
}

// claimsText is an instance's claims on one line: name=value (source), by name.
func claimsText(claims map[string]api.AppClaim) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(claims)) {
		c := claims[k]
		parts = append(parts, fmt.Sprintf("%s=%v (%s)", k, c.Value, c.Source))
	}
	return strings.Join(parts, ", ")
}
