package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/halemdm/hale/api"
	"github.com/halemdm/hale/posture"
)

// deliveryMethod is a stream's delivery method in a word.
func deliveryMethod(s api.EventStream) string {
	switch s.Delivery.Method {
	case api.DeliveryPush:
		return "push"
	case api.DeliveryPoll:
		return "poll"
	}
	return s.Delivery.Method
}

// streamPath is the OpenID SSF configuration endpoint.
const streamPath = "/ssf/v1/stream"

func (a *app) eventsCommand() *cobra.Command {
	cmd := group("events", "Revocation event streams (OpenID SSF/CAEP): create, list, poll, verify, delete", "event")

	req := api.EventStreamRequest{Delivery: new(api.EventDelivery)}
	create := &cobra.Command{
		Use:   "create [--audience A] [--push URL [--authorization VALUE]]",
		Short: "Create a stream owned by this token: polled (RFC 8936) by default, pushed (RFC 8935) with --push",
		Long: `Create makes an event stream that belongs to the token creating it: only that token can poll,
change, verify or delete it (admin and security can read and delete every stream). A messaging
backend creates its stream with its own access token.`,
		Args: cobra.NoArgs,
		RunE: runE(func(cmd *cobra.Command, _ []string) error {
			req.Delivery.Method = api.DeliveryPoll
			if req.Delivery.EndpointURL != "" {
				req.Delivery.Method = api.DeliveryPush
			} else if req.Delivery.AuthorizationHeader != "" {
				return usagef("--authorization goes with --push")
			}
			return show(a, cmd.Context(), http.MethodPost, streamPath, req, func(w io.Writer, s api.EventStream) error {
				return fields(w, "stream_id", s.StreamID, "delivery", deliveryMethod(s), "audience", s.Audience, "endpoint", s.Delivery.EndpointURL)
			})
		}),
	}
	f := create.Flags()
	f.StringVar(&req.Audience, "audience", "", "the receiver's name, the aud of every SET of the stream (default: the push URL or the poll URL)")
	f.StringVar(&req.Delivery.EndpointURL, "push", "", "HTTPS URL to push SETs to (RFC 8935)")
	f.StringVar(&req.Delivery.AuthorizationHeader, "authorization", "", "Authorization header value the receiver expects on pushes")
	f.StringVar(&req.Description, "description", "", "what the stream is for, for people")

	list := &cobra.Command{
		Use:   "list",
		Short: "List this token's streams (every stream for admin, security and auditor) with their pending events and last delivery error",
		Args:  cobra.NoArgs,
		RunE: runE(func(cmd *cobra.Command, _ []string) error {
			return show(a, cmd.Context(), http.MethodGet, streamPath, nil, func(w io.Writer, streams []api.EventStream) error {
				return tableOf(w, []string{"STREAM_ID", "DELIVERY", "STATUS", "AUDIENCE", "PENDING", "LAST ERROR"}, streams, func(s api.EventStream) []string {
					return []string{s.StreamID, deliveryMethod(s), s.Status, s.Audience, fmt.Sprint(s.Pending), s.LastError}
				})
			})
		}),
	}

	var state string
	verify := &cobra.Command{
		Use:   "verify STREAM [--state S]",
		Short: "Ask for a verification event on a stream this token owns; it carries --state back",
		Args:  cobra.ExactArgs(1),
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			body := api.EventVerifyRequest{StreamID: args[0], State: state}
			if err := c.do(cmd.Context(), http.MethodPost, "/ssf/v1/verify", body, nil); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "verification event queued on %s\n", args[0])
			return nil
		}),
	}
	verify.Flags().StringVar(&state, "state", "", "an opaque value the verification event echoes")

	del := &cobra.Command{
		Use:   "delete STREAM",
		Short: "Delete a stream this token owns (admin and security: any stream) and the events waiting in it",
		Args:  cobra.ExactArgs(1),
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			if err := c.do(cmd.Context(), http.MethodDelete, streamPath+"?stream_id="+url.QueryEscape(args[0]), nil, nil); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "deleted %s\n", args[0])
			return nil
		}),
	}

	var audience string
	var maxEvents int
	poll := &cobra.Command{
		Use:   "poll STREAM [--audience A] [--max 100]",
		Short: "Fetch a polled stream's events, verify each against the server's keys, and acknowledge them (the stream's token)",
		Long: `Poll fetches the stream's pending Security Event Tokens (RFC 8936), verifies each one's
signature against the server's JWKS, its issuer and its audience (with the posture package a
messaging backend uses), prints the verified events and acknowledges them. Only the token that
created the stream may poll it. The audience is the stream's unless --audience names another;
a SET that does not verify (a wrong --audience, say) is left pending for the real receiver and
makes poll exit 6.`,
		Args: cobra.ExactArgs(1),
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			events, err := pollEvents(cmd.Context(), c, args[0], audience, maxEvents)
			if err != nil {
				return err
			}
			if a.output == "json" {
				return a.printJSON(events)
			}
			err = tableOf(a.stdout, []string{"JTI", "EVENT", "SUBJECT", "STATUS", "REASON", "TXN", "AT"}, events, func(e polledEvent) []string {
				return []string{e.JTI, e.Type, e.Device, firstOf(e.Status, e.State), e.Reason, e.TXN, ts(e.At)}
			})
			if err != nil {
				return err
			}
			for _, e := range events {
				if e.Error != "" {
					return codedError{exitVerify, fmt.Errorf("SET %s did not verify: %s", e.JTI, e.Error)}
				}
			}
			return nil
		}),
	}
	poll.Flags().StringVar(&audience, "audience", "", "the audience every SET must carry (default: the stream's)")
	poll.Flags().IntVar(&maxEvents, "max", 100, "most events to fetch (1-1000)")

	cmd.AddCommand(create, list, poll, verify, del)
	return cmd
}

func firstOf(v ...string) string {
	for _, s := range v {
		if s != "" {
			return s
		}
	}
	return ""
}

// polledEvent is one event of a polled SET, after verification: mdmctl's own view of the SETs
// the server sent (posture.PollResponse), which poll prints, not a server answer.
type polledEvent struct {
	JTI    string    `json:"jti"`
	Type   string    `json:"event"`               // the event type's last path element: session-revoked, ...
	Device string    `json:"device_id,omitempty"` // the subject: a device, or the stream for verification
	Status string    `json:"current_status,omitempty"`
	Reason string    `json:"reason_code,omitempty"`
	State  string    `json:"state,omitempty"` // a verification event's echoed state
	TXN    string    `json:"txn,omitempty"`   // the command or change behind the event
	At     time.Time `json:"event_time,omitzero"`
	Error  string    `json:"error,omitempty"` // why the SET was rejected
}

// pollEvents fetches, verifies and acknowledges a stream's pending SETs.
func pollEvents(ctx context.Context, c *client, stream, audience string, max int) ([]polledEvent, error) {
	if max < 1 || max > 1000 {
		return nil, usagef("--max must be 1 to 1000")
	}
	var conf api.SSFConfiguration
	if err := c.do(ctx, http.MethodGet, "/.well-known/ssf-configuration", nil, &conf); err != nil {
		return nil, err
	}
	if audience == "" {
		var s api.EventStream
		if err := c.do(ctx, http.MethodGet, streamPath+"?stream_id="+url.QueryEscape(stream), nil, &s); err != nil {
			return nil, err
		}
		audience = s.Audience
	}
	// The keys come from this server, over the connection mdmctl trusts, whatever the
	// configuration names: a SET proves only what the server's own keys sign.
	keys := posture.RemoteJWKS(c.base+"/access/v1/jwks.json", c.http)
	var out []polledEvent
	var current *polledEvent
	rx := posture.NewReceiver(keys, audience, conf.Issuer, posture.WithOnEvent(
		func(_ context.Context, set posture.SETClaims, eventType string, ev posture.CAEPEvent) {
			e := *current
			e.Type = eventType[strings.LastIndexByte(eventType, '/')+1:]
			e.Device, e.Status, e.Reason, e.TXN = set.SubID.ID, ev.CurrentStatus, ev.ReasonCode, set.TXN
			if eventType == posture.EventVerification {
				var v posture.VerificationEvent
				_ = json.Unmarshal(set.Events[eventType], &v)
				e.State = v.State
			}
			if ev.EventTimestamp > 0 {
				e.At = time.Unix(ev.EventTimestamp, 0).UTC()
			}
			out = append(out, e)
		}))

	path := "/ssf/v1/streams/" + url.PathEscape(stream) + "/poll"
	var got posture.PollResponse
	if err := c.do(ctx, http.MethodPost, path, posture.PollRequest{MaxEvents: &max, ReturnImmediately: true}, &got); err != nil {
		return nil, err
	}
	ack := posture.PollRequest{MaxEvents: new(int), ReturnImmediately: true}
	for jti, set := range got.SETs {
		current = &polledEvent{JTI: jti}
		if err := rx.Deliver(ctx, set); err != nil {
			out = append(out, polledEvent{JTI: jti, Error: err.Error()})
			continue
		}
		ack.Ack = append(ack.Ack, jti)
	}
	if len(ack.Ack) > 0 {
		if err := c.do(ctx, http.MethodPost, path, ack, &got); err != nil {
			return nil, fmt.Errorf("acknowledging the events: %w", err)
		}
	}
	return out, nil
}
