package main

import (
	"io"
	"net/http"
	"strings"

	"github.com/spf13/cobra"

	"github.com/halemdm/hale/api"
)

// breakGlassCommand is emergency access for security: grant it for a device, list the uses
// (the unreviewed ones a day old first of all), and review each.
func (a *app) breakGlassCommand() *cobra.Command {
	cmd := group("break-glass", "Emergency access (HIPAA): grant, list and review uses")
	var (
		unreviewed bool
		olderThan  string
		device     string
	)
	header := []string{"ID", "DEVICE", "PERSON", "CHANNEL", "STARTED", "EXPIRES", "ACTIVE", "ENDED", "REVIEW", "OVERDUE", "REASON"}
	list := &cobra.Command{
		Use:   "list [--unreviewed [--older-than 24h]] [--device ID]",
		Short: "List emergency access uses; --unreviewed shows those awaiting review for a day or more",
		Args:  cobra.NoArgs,
		RunE: runE(func(cmd *cobra.Command, _ []string) error {
			kv := []string{"device", device}
			if unreviewed {
				kv = append(kv, "unreviewed", "true", "older_than", olderThan)
			}
			return show(a, cmd.Context(), http.MethodGet, query("/api/v1/break-glass", kv...), nil, func(w io.Writer, ans api.BreakGlassList) error {
				return tableOf(w, header, ans.Uses, func(u api.BreakGlassUse) []string {
					review := "-"
					if u.Review != nil {
						review = u.Review.Decision + " by " + u.Review.By
					}
					return []string{u.ID, u.DeviceID, u.Person, u.Channel, ts(u.StartedAt), ts(u.ExpiresAt), yesNo(u.Active),
						u.EndReason, review, yesNo(u.Overdue), u.Reason}
				})
			})
		}),
	}
	list.Flags().BoolVar(&unreviewed, "unreviewed", false, "only uses without a review")
	list.Flags().StringVar(&olderThan, "older-than", "", "with --unreviewed: started longer ago than this (default 24h; 0s for all)")
	list.Flags().StringVar(&device, "device", "", "only this device's uses")

	var reason, duration string
	grant := &cobra.Command{
		Use:   "grant DEVICE_ID --reason TEXT [--duration 2h]",
		Short: "Open emergency access for a device whose owner cannot (the policy's rules apply)",
		Args:  cobra.ExactArgs(1),
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			body := api.BreakGlassRequest{Reason: reason, Duration: duration}
			return show(a, cmd.Context(), http.MethodPost, pathf("/api/v1/devices/%s/break-glass", args[0]), body, renderUse)
		}),
	}
	grant.Flags().StringVar(&reason, "reason", "", "why care cannot wait (on the audit record)")
	grant.Flags().StringVar(&duration, "duration", "", "how long (default and most: the policy's break_glass.duration)")

	var revoke bool
	var note string
	review := &cobra.Command{
		Use:   "review USE_ID [--revoke] [--note TEXT]",
		Short: "Approve a use (or revoke it: a use still in force ends at once)",
		Args:  cobra.ExactArgs(1),
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			body := api.BreakGlassReviewRequest{Decision: "approved", Note: note}
			if revoke {
				body.Decision = "revoked"
			}
			return show(a, cmd.Context(), http.MethodPost, pathf("/api/v1/break-glass/%s/review", args[0]), body, renderUse)
		}),
	}
	review.Flags().BoolVar(&revoke, "revoke", false, "revoke instead of approve")
	review.Flags().StringVar(&note, "note", "", "note for the audit record")
	cmd.AddCommand(list, grant, review)
	return cmd
}

func renderUse(w io.Writer, u api.BreakGlassUse) error {
	review := "awaiting"
	if u.Review != nil {
		review = u.Review.Decision + " by " + u.Review.By
	}
	return fields(w, "use", u.ID, "device", u.DeviceID, "person", u.Person, "channel", u.Channel,
		"overrides", strings.Join(u.Overrides, ", "), "started", ts(u.StartedAt), "expires", ts(u.ExpiresAt),
		"active", yesNo(u.Active), "ended", u.EndReason, "review", review, "reason", u.Reason)
}
