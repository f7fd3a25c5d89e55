package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"

	"github.com/spf13/cobra"

	"github.com/halemdm/hale/api"
)

func (a *app) enrollCommand() *cobra.Command {
	cmd := group("enroll", "Create, list and revoke enrollment tokens")

	var req api.EnrollmentRequest
	var qrFile string
	create := &cobra.Command{
		Use:   "create --owner O --group G --platform apple|agent|android [--byod [--managed-apple-id USER@DOMAIN]] [--qr FILE.png] [--ttl 24h] [--reusable --os linux|windows|macos --max-devices N]",
		Short: "Create a one-time enrollment token (shown once)",
		Long: `create makes a one-time enrollment. For android it is an Android Management API enrollment
token: a company phone scans the QR code (--qr writes it as a PNG) in its setup wizard; a personal
phone (--byod) opens the link to add a work profile. A personal Apple device (--byod with
--managed-apple-id) enrolls through account-driven User Enrollment: the token is the code the
person gives on the sign-in page.

--reusable makes a reusable credential for agent installers instead (see "mdmctl package agent"):
up to --max-devices agents running --os enroll with it, each with its own identity, until it
expires (--ttl up to 365d) or is revoked; --owner defaults to the group.`,
		Args: cobra.NoArgs,
		RunE: runE(func(cmd *cobra.Command, _ []string) error {
			switch {
			case req.Platform != "apple" && req.Platform != "agent" && req.Platform != "android":
				return usagef("--platform must be apple, agent or android")
			case req.BYOD && req.Platform == "agent":
				return usagef("--byod is for apple (User Enrollment) and android (a work profile)")
			case req.BYOD && req.Platform == "apple" && req.ManagedAppleID == "":
				return usagef("--byod on apple needs --managed-apple-id")
			case qrFile != "" && req.Platform != "android":
				return usagef("--qr is for --platform android")
			case req.Reusable && (req.Platform != "agent" || req.OS == "" || req.MaxDevices < 1):
				return usagef("--reusable needs --platform agent, --os and --max-devices")
			case !req.Reusable && req.Owner == "":
				return usagef("--owner is required")
			}
			return show(a, cmd.Context(), http.MethodPost, "/api/v1/enrollments", req, func(w io.Writer, e api.NewEnrollment) error {
				if e.BYOD && e.Platform == "apple" {
					// The person signs in to e.ManagedAppleID in Settings and gives the token as the code.
					return fields(w, "id", e.ID, "owner", e.Owner, "group", e.Group, "platform", e.Platform+" (personal, User Enrollment)",
						"managed apple account", e.ManagedAppleID, "expires", ts(e.ExpiresAt), "enrollment code", e.Token, "sign-in page", e.SignInURL)
				}
				kv := []string{"id", e.ID, "owner", e.Owner, "group", e.Group, "platform", e.Platform,
					"expires", ts(e.ExpiresAt), "token", e.Token, "profile url", e.ProfileURL}
				if e.Reusable {
					kv = append(kv, "reusable", fmt.Sprintf("%s agents, up to %d devices", e.OS, e.MaxDevices))
				}
				if ae := e.Android; ae != nil {
					kv = append(kv, "enrollment link", ae.Link, "android policy", ae.Policy)
					if qrFile != "" {
						if err := os.WriteFile(qrFile, ae.QRPNG, 0o600); err != nil {
							return err
						}
						kv = append(kv, "qr code", qrFile)
					}
				}
				return fields(w, kv...)
			})
		}),
	}
	f := create.Flags()
	f.StringVar(&req.Owner, "owner", "", "who the device belongs to")
	f.StringVar(&req.Group, "group", "", "the device's group (policies and approvals follow it)")
	f.StringVar(&req.Platform, "platform", "", "apple (enrollment profile), agent (mdmagent enroll) or android (AMAPI token)")
	f.StringVar(&req.TTL, "ttl", "", "how long the token is valid, like 24h (server default when empty)")
	f.BoolVar(&req.BYOD, "byod", false, "a personal device: Apple through account-driven User Enrollment (no full erase), Android with a work profile")
	f.StringVar(&req.ManagedAppleID, "managed-apple-id", "", "apple with --byod: the Managed Apple Account the person signs in with")
	f.StringVar(&qrFile, "qr", "", "android: write the enrollment QR code to this PNG file")
	f.BoolVar(&req.Reusable, "reusable", false, "a reusable credential for agent installers (with --os and --max-devices)")
	f.StringVar(&req.OS, "os", "", "--reusable: linux, windows or macos")
	f.IntVar(&req.MaxDevices, "max-devices", 0, "--reusable: how many devices may enroll with it")
	for _, n := range []string{"group", "platform"} {
		_ = create.MarkFlagRequired(n)
	}

	list := &cobra.Command{
		Use:   "list",
		Short: "List enrollments and their state",
		Args:  cobra.NoArgs,
		RunE: runE(func(cmd *cobra.Command, _ []string) error {
			return show(a, cmd.Context(), http.MethodGet, "/api/v1/enrollments", nil, func(w io.Writer, ans api.Enrollments) error {
				return tableOf(w, []string{"ID", "OWNER", "GROUP", "PLATFORM", "STATE", "EXPIRES", "DEVICE", "USES"}, ans.Enrollments, func(e api.Enrollment) []string {
					uses := ""
					if e.Reusable {
						uses = fmt.Sprintf("%d/%d %s", e.Uses, e.MaxDevices, e.OS)
					}
					return []string{e.ID, e.Owner, e.Group, e.Platform, e.State, ts(e.ExpiresAt), e.DeviceID, uses}
				})
			})
		}),
	}

	revoke := &cobra.Command{
		Use:   "revoke ID",
		Short: "Revoke an unused enrollment token or a reusable credential",
		Args:  cobra.ExactArgs(1),
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			// The answer is printed as the server sent it with -o json; the table needs none of it.
			return show(a, cmd.Context(), http.MethodDelete, pathf("/api/v1/enrollments/%s", args[0]), nil, func(w io.Writer, _ json.RawMessage) error {
				_, err := fmt.Fprintf(w, "enrollment %s revoked\n", sanitize(args[0]))
				return err
			})
		}),
	}
	cmd.AddCommand(create, list, revoke)
	return cmd
}
