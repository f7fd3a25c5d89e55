package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/halemdm/hale/api"
	"github.com/halemdm/hale/posture"
)

// maxPages bounds how many pages a listing follows, against a server that never ends one.
const maxPages = 10000

func (a *app) devicesCommand() *cobra.Command {
	cmd := group("devices", "List and show enrolled devices", "device")

	var state, group, owner, agentOlderThan string
	var pageSize int
	list := &cobra.Command{
		Use:   "list [--state S] [--group G] [--owner O] [--agent-older-than v1.4.0]",
		Short: "List devices (every page)",
		Args:  cobra.NoArgs,
		RunE: runE(func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			devs, err := listDevices(cmd.Context(), c, state, group, owner, pageSize, "agent_older_than", agentOlderThan)
			if err != nil {
				return err
			}
			if a.output == "json" {
				if devs == nil {
					devs = []json.RawMessage{}
				}
				return a.printJSON(map[string]any{"devices": devs, "next_cursor": ""})
			}
			rows := make([][]string, 0, len(devs))
			for _, raw := range devs {
				var d api.Device
				if err := json.Unmarshal(raw, &d); err != nil {
					return fmt.Errorf("decoding a device: %w", err)
				}
				rows = append(rows, []string{d.ID, d.Platform, d.OS, d.Owner, d.Group, d.State, ts(d.LastSeen), d.AgentVersion})
			}
			return table(a.stdout, []string{"ID", "PLATFORM", "OS", "OWNER", "GROUP", "STATE", "LAST SEEN", "AGENT"}, rows)
		}),
	}
	f := list.Flags()
	f.StringVar(&state, "state", "", "active, locked, lost, wiped, unenrolled or retired")
	f.StringVar(&group, "group", "", "only this group")
	f.StringVar(&owner, "owner", "", "only this owner")
	f.StringVar(&agentOlderThan, "agent-older-than", "", "only agents older than this version (and those that reported none): who an upgrade has not reached")
	f.IntVar(&pageSize, "page-size", 0, "devices per request (server default when 0)")

	showCmd := &cobra.Command{
		Use:   "show ID",
		Short: "Show one device: its record, access decision, verdict, posture and last wipe",
		Long: `show prints the device's inventory record; the access API's decision (allow, and why not);
the verdict (compliant, its reasons, the grace period and until when); every posture claim with
its source (agent, mdm, app, attested) and age; and its last wipe with the outcome of each managed
data path. -o json prints GET /api/v1/devices/{id} as the server answers it.`,
		Args: cobra.ExactArgs(1),
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			return a.showDevice(cmd.Context(), args[0])
		}),
	}
	cmd.AddCommand(list, showCmd)
	cmd.AddCommand(a.appCommands()...)
	return cmd
}

// listDevices follows next_cursor to the end. It keeps each device as the server sent it, so
// -o json prints the fields of a newer server too; the table decodes them as api.Device.
// extra are more query name, value pairs (empty values are left out).
func listDevices(ctx context.Context, c *client, state, group, owner string, pageSize int, extra ...string) ([]json.RawMessage, error) {
	var all []json.RawMessage
	cursor, limit := "", ""
	if pageSize > 0 {
		limit = strconv.Itoa(pageSize)
	}
	seen := map[string]bool{}
	for range maxPages {
		// api.Devices, with each device kept raw.
		var page struct {
			Devices    []json.RawMessage `json:"devices"`
			NextCursor string            `json:"next_cursor"`
		}
		path := query("/api/v1/devices", append([]string{"state", state, "group", group, "owner", owner, "cursor", cursor, "limit", limit}, extra...)...)
		if err := c.do(ctx, http.MethodGet, path, nil, &page); err != nil {
			return nil, err
		}
		all = append(all, page.Devices...)
		if page.NextCursor == "" {
			return all, nil
		}
		if seen[page.NextCursor] {
			return nil, errors.New("the server repeated a page cursor; stopping")
		}
		seen[page.NextCursor] = true
		cursor = page.NextCursor
	}
	return nil, fmt.Errorf("more than %d pages of devices; narrow the listing", maxPages)
}

// command is one of a device's commands as the API shows it: an Apple MDM command (Apple is set)
// or an agent command. An Apple command's JSON is decoded as an agent command too, so its state
// and its result's status read the same way for both kinds.
type command struct {
	api.AgentCommand
	// Apple is the command when the device is an Apple device, with its result once answered.
	Apple *api.AppleCommandWithResult
}

// UnmarshalJSON decodes either kind of command: an Apple command names itself by command_id.
func (c *command) UnmarshalJSON(b []byte) error {
	var probe struct {
		CommandID string `json:"command_id"`
	}
	if err := json.Unmarshal(b, &probe); err != nil {
		return err
	}
	*c = command{}
	if probe.CommandID != "" {
		c.Apple = new(api.AppleCommandWithResult)
		if err := json.Unmarshal(b, c.Apple); err != nil {
			return err
		}
	}
	return json.Unmarshal(b, &c.AgentCommand)
}

// writeDetail writes the command's fields, its result and, for a wipe, a table of its paths.
func (c *command) writeDetail(w io.Writer) error {
	kv := []string{"id", c.id(), "type", c.kind(), "state", c.State, "issued by", c.by(), "issued", ts(c.issued()), "updated", ts(c.updated())}
	if c.Result != nil {
		kv = append(kv, "result", c.Result.Status, "detail", c.Result.Detail)
	}
	if err := fields(w, kv...); err != nil {
		return err
	}
	return writePaths(w, c.Result)
}

// writePaths writes a wipe result's paths as a table, if it has any.
func writePaths(w io.Writer, r *api.AgentCommandResult) error {
	if r == nil || len(r.Paths) == 0 {
		return nil
	}
	return tableOf(w, []string{"PATH", "OUTCOME", "REASON", "POLICY ENTRY"}, r.Paths, func(p api.PathResult) []string {
		return []string{p.Path, p.Outcome, p.Reason, p.Managed}
	})
}

func (c *command) id() string {
	if c.Apple != nil {
		return c.Apple.CommandID
	}
	return c.ID
}

func (c *command) kind() string {
	if c.Apple != nil {
		return c.Apple.RequestType
	}
	return c.Type
}

func (c *command) by() string {
	if c.Apple != nil {
		return c.Apple.RequestedBy
	}
	return c.IssuedBy
}

func (c *command) issued() time.Time {
	if c.Apple != nil {
		return c.Apple.CreatedAt
	}
	return c.IssuedAt
}

// updated is when the command last changed: answered or finished, else its last update.
func (c *command) updated() time.Time {
	if c.Apple != nil {
		return firstTime(c.Apple.AnsweredAt, c.Apple.UpdatedAt)
	}
	return c.FinishedAt
}

// firstTime returns the first of ts that is set, or the zero time.
func firstTime(ts ...time.Time) time.Time {
	for _, t := range ts {
		if !t.IsZero() {
			return t
		}
	}
	return time.Time{}
}

func (c *command) row() []string {
	detail := ""
	if c.Result != nil {
		detail = firstNonEmpty(c.Result.Detail, c.Result.Status)
	}
	return []string{c.id(), c.kind(), c.State, c.by(), ts(c.issued()), ts(c.updated()), detail}
}

var commandHeader = []string{"ID", "TYPE", "STATE", "ISSUED BY", "ISSUED", "UPDATED", "RESULT"}

func (a *app) commandsCommand() *cobra.Command {
	cmd := group("commands", "Commands sent to a device and their states")
	list := &cobra.Command{
		Use:   "list DEVICE",
		Short: "List a device's commands",
		Args:  cobra.ExactArgs(1),
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			return show(a, cmd.Context(), http.MethodGet, pathf("/api/v1/devices/%s/commands", args[0]), nil, func(w io.Writer, ans struct{ Commands []command }) error {
				return tableOf(w, commandHeader, ans.Commands, func(c command) []string { return c.row() })
			})
		}),
	}
	showCmd := &cobra.Command{
		Use:   "show DEVICE COMMAND_ID",
		Short: "Show one command and its result",
		Args:  cobra.ExactArgs(2),
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			return show(a, cmd.Context(), http.MethodGet, pathf("/api/v1/devices/%s/commands/%s", args[0], args[1]), nil, func(w io.Writer, cm command) error {
				return cm.writeDetail(w)
			})
		}),
	}
	pin := &cobra.Command{
		Use:   "pin DEVICE COMMAND_ID",
		Short: "Show the unlock PIN of a lock or wipe command (security role)",
		Args:  cobra.ExactArgs(2),
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			return show(a, cmd.Context(), http.MethodGet, pathf("/api/v1/devices/%s/commands/%s/pin", args[0], args[1]), nil, func(w io.Writer, ans api.CommandPIN) error {
				_, err := fmt.Fprintln(w, sanitize(ans.PIN))
				return err
			})
		}),
	}
	cmd.AddCommand(list, showCmd, pin)
	return cmd
}

func (a *app) accessCommand() *cobra.Command {
	cmd := group("access", "Ask what the messaging backend would be told about a device")
	var fingerprint, certFile string
	check := &cobra.Command{
		Use:   "check DEVICE | --fingerprint HEX | --cert FILE",
		Short: "Show the access decision for a device, by ID or by its certificate",
		Long: `check shows the decision the access API gives the messaging backend. By device ID it uses
GET /api/v1/devices/{id}/access (it, security, auditor); by certificate (--cert PEM file) or
certificate SHA-256 (--fingerprint) it uses POST /access/v1/check, which needs an access or admin
token.`,
		Args: cobra.MaximumNArgs(1),
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			given := len(args)
			if fingerprint != "" {
				given++
			}
			if certFile != "" {
				given++
			}
			if given != 1 {
				return usagef("name the device one way: DEVICE, --fingerprint or --cert")
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			var raw json.RawMessage
			switch {
			case len(args) == 1:
				err = c.do(cmd.Context(), http.MethodGet, pathf("/api/v1/devices/%s/access", args[0]), nil, &raw)
			case fingerprint != "":
				err = c.do(cmd.Context(), http.MethodPost, "/access/v1/check", posture.CheckRequest{Subject: posture.Subject{CertificateSHA256: fingerprint}}, &raw)
			default:
				pemBytes, rerr := readFileLimited(certFile, 16<<10)
				if rerr != nil {
					return rerr
				}
				err = c.do(cmd.Context(), http.MethodPost, "/access/v1/check", posture.CheckRequest{Subject: posture.Subject{Certificate: string(pemBytes)}}, &raw)
			}
			if err != nil {
				return err
			}
			return emitAs(a, raw, func(w io.Writer, ans posture.Decision) error {
				verdict := "DENY"
				if ans.Allow {
					verdict = "ALLOW"
				}
				if err := fields(w, "device", ans.DeviceID, "decision", verdict, "state", ans.State,
					"compliant", yesNo(ans.Compliant), "in grace", yesNo(ans.InGrace), "grace until", ts(ans.GraceUntil),
					"noncompliant since", ts(ans.NoncompliantSince), "evaluated", ts(ans.EvaluatedAt), "reported", ts(ans.ReportedAt)); err != nil {
					return err
				}
				writeReasons(w, ans.Reasons)
				return nil
			})
		}),
	}
	check.Flags().StringVar(&fingerprint, "fingerprint", "", "SHA-256 of the device certificate (hex, colons allowed)")
	check.Flags().StringVar(&certFile, "cert", "", "PEM file of the device certificate")
	cmd.AddCommand(check)
	return cmd
}
