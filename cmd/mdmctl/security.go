package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/spf13/cobra"

	"github.com/halemdm/hale/api"
	"github.com/halemdm/hale/internal/randid"
)

// newIdempotencyKey makes a random key, so a retried call does not lock or wipe twice.
func newIdempotencyKey() string { return randid.Hex(16) }

func (a *app) securityCommand(action string) *cobra.Command {
	var (
		req      api.SecurityRequest
		idemKey  string
		yes      bool
		short    string
		isWipe   = action == "wipe"
		endpoint = action
	)
	switch action {
	case "lock":
		short = "Lock a device: it is denied access at once, then the device is told to lock"
	case "lost-mode":
		short = "Put a device in lost mode (Apple: EnableLostMode with a message and phone number)"
	case "wipe":
		short = "Wipe a device (asks you to type the device ID; --yes skips)"
	}
	use := action + " DEVICE --reason TEXT"
	if isWipe {
		use += " --mode full|selective [--yes]"
	}
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Long: short + `.

The device is denied by the access API before the command is queued. --idempotency-key makes a
retry safe: the server answers a repeated key with the first answer instead of acting again; a
random key is made and printed when you give none.`,
		Args: cobra.ExactArgs(1),
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			id := args[0]
			if isWipe && !yes {
				if err := a.confirmWipe(id); err != nil {
					return err
				}
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			if idemKey == "" {
				idemKey = newIdempotencyKey()
			}
			fmt.Fprintf(a.stderr, "idempotency key: %s (repeat with --idempotency-key %s to retry safely)\n", idemKey, idemKey)
			var raw json.RawMessage
			err = c.send(cmd.Context(), call{
				method: http.MethodPost, path: pathf("/api/v1/devices/%s/"+endpoint, id), body: req,
				header: http.Header{"Idempotency-Key": {idemKey}},
			}, &raw)
			if err != nil {
				return err
			}
			return emitAs(a, raw, func(w io.Writer, ans api.SecurityAnswer) error {
				if ans.State == api.StatePendingApproval || ans.ApprovalID != "" {
					expires := ""
					if !ans.ExpiresAt.IsZero() {
						expires = ", expires " + ts(ans.ExpiresAt)
					}
					_, err := fmt.Fprintf(w, "The wipe of device %s awaits approval by a second security token holder (approval %s%s).\n"+
						"Nothing is wiped until then. They approve it with:\n  mdmctl approve %s\nor refuse it with:\n  mdmctl approve %s --reject\n",
						sanitize(id), sanitize(ans.ApprovalID), expires, sanitize(ans.ApprovalID), sanitize(ans.ApprovalID))
					return err
				}
				return fields(w, "device", firstNonEmpty(ans.DeviceID, id), "action", action, "command", ans.CommandID,
					"command state", ans.State, "device state", ans.DeviceState, "effect", ans.Effect)
			})
		}),
	}
	f := cmd.Flags()
	f.StringVar(&req.Reason, "reason", "", "why (required; it goes on the audit record)")
	f.StringVar(&req.Message, "message", "", "message shown on the device's screen")
	f.StringVar(&req.PhoneNumber, "phone", "", "phone number shown on the device's screen")
	f.StringVar(&req.PIN, "pin", "", "6-digit PIN (macOS Find My PIN for lock and erase)")
	f.StringVar(&idemKey, "idempotency-key", "", "key that makes a retry safe (default: random, printed)")
	_ = cmd.MarkFlagRequired("reason")
	if isWipe {
		f.StringVar(&req.Mode, "mode", "", "full (Apple EraseDevice) or selective (agent: the policy's managed data)")
		f.BoolVar(&req.PreserveDataPlan, "preserve-data-plan", false, "keep the eSIM data plan (iOS)")
		f.BoolVar(&req.DisallowProximitySetup, "disallow-proximity-setup", false, "no Quick Start after the erase (iOS)")
		f.StringVar(&req.ObliterationBehavior, "obliteration-behavior", "", "macOS: Default, DoNotObliterate, ObliterateWithWarning or Always")
		f.BoolVarP(&yes, "yes", "y", false, "do not ask for confirmation")
		_ = cmd.MarkFlagRequired("mode")
	}
	return cmd
}

// confirmWipe asks the person at the terminal to type the device ID. Without a terminal (a
// script) it refuses: scripts say --yes.
func (a *app) confirmWipe(id string) error {
	if !a.isTerminal() {
		return usagef("refusing to wipe %s without confirmation: no terminal to ask on; pass --yes", id)
	}
	fmt.Fprintf(a.stderr, "This erases device %s. Type the device ID to confirm: ", sanitize(id))
	line, err := a.readLine()
	if err != nil {
		return usageError{fmt.Errorf("no confirmation read: %w; nothing was wiped", err)}
	}
	if line != id {
		return usageError{errors.New("the device ID typed does not match; nothing was wiped")}
	}
	return nil
}

func (a *app) approveCommand() *cobra.Command {
	var (
		reject  bool
		comment string
	)
	cmd := &cobra.Command{
		Use:   "approve APPROVAL_ID [--reject] [--comment TEXT]",
		Short: "Approve (or reject) a wipe that waits for a second security token holder",
		Args:  cobra.ExactArgs(1),
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			decision := "approve"
			if reject {
				decision = "reject"
			}
			body := api.ApprovalDecision{Decision: decision, Comment: comment}
			return show(a, cmd.Context(), http.MethodPost, pathf("/api/v1/approvals/%s", args[0]), body, func(w io.Writer, ap api.ApprovalDecided) error {
				return fields(w, "approval", ap.ID, "state", ap.State, "action", ap.Action, "device", ap.DeviceID,
					"requested by", ap.RequestedBy, "decided by", ap.DecidedBy, "command", ap.CommandID)
			})
		}),
	}
	cmd.Flags().BoolVar(&reject, "reject", false, "reject instead of approve")
	cmd.Flags().StringVar(&comment, "comment", "", "note for the audit record")
	return cmd
}

func (a *app) approvalsCommand() *cobra.Command {
	cmd := group("approvals", "Wipes waiting for, or decided by, a second person")
	var state string
	list := &cobra.Command{
		Use:   "list [--state pending|approved|rejected|expired]",
		Short: "List approvals",
		Args:  cobra.NoArgs,
		RunE: runE(func(cmd *cobra.Command, _ []string) error {
			header := []string{"ID", "ACTION", "DEVICE", "MODE", "REQUESTED BY", "STATE", "CREATED", "EXPIRES", "DECIDED BY", "COMMAND"}
			return show(a, cmd.Context(), http.MethodGet, query("/api/v1/approvals", "state", state), nil, func(w io.Writer, ans api.Approvals) error {
				return tableOf(w, header, ans.Approvals, func(ap api.Approval) []string {
					return []string{ap.ID, ap.Action, ap.DeviceID, ap.Mode, ap.RequestedBy, ap.State,
						ts(ap.CreatedAt), ts(ap.ExpiresAt), ap.DecidedBy, ap.CommandID}
				})
			})
		}),
	}
	list.Flags().StringVar(&state, "state", "", "pending, approved, rejected or expired")
	cmd.AddCommand(list)
	return cmd
}
