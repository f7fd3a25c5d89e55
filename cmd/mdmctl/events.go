package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/halemdm/hale/posture"
)

// eventStream is a revocation event stream as the server shows it.
type eventStream struct {
	ID              string   `json:"id"`
	Delivery        string   `json:"delivery"`
	EndpointURL     string   `json:"endpoint_url"`
	Audience        string   `json:"audience"`
	EventsRequested []string `json:"events_requested"`
	Pending         int      `json:"pending"`
	LastError       string   `json:"last_error"`
}

func (a *app) eventsCommand() *cobra.Command {
	cmd := group("events", "Revocation event streams (OpenID SSF/CAEP): create, list, poll", "event")

	var req struct {
		Delivery            string `json:"delivery"`
		Audience            string `json:"audience"`
		EndpointURL         string `json:"endpoint_url,omitempty"`
		AuthorizationHeader string `json:"authorization_header,omitempty"`
	}
	create := &cobra.Command{
		Use:   "create --audience A [--push URL [--authorization VALUE]]",
		Short: "Create a stream: polled (RFC 8936) by default, pushed (RFC 8935) with --push (admin)",
		Args:  cobra.NoArgs,
		RunE: runE(func(cmd *cobra.Command, _ []string) error {
			req.Delivery = "poll"
			if req.EndpointURL != "" {
				req.Delivery = "push"
			}
			return show(a, cmd.Context(), http.MethodPost, "/api/v1/event-streams", req, func(w io.Writer, s eventStream) error {
				return fields(w, "id", s.ID, "delivery", s.Delivery, "audience", s.Audience, "endpoint", s.EndpointURL)
			})
		}),
	}
	f := create.Flags()
	f.StringVar(&req.Audience, "audience", "", "the receiver's name; every SET of the stream carries it as aud")
	f.StringVar(&req.EndpointURL, "push", "", "HTTPS URL to push SETs to (RFC 8935)")
	f.StringVar(&req.AuthorizationHeader, "authorization", "", "Authorization header value the receiver expects on pushes")
	_ = create.MarkFlagRequired("audience")

	list := &cobra.Command{
		Use:   "list",
		Short: "List streams with their pending events and last delivery error",
		Args:  cobra.NoArgs,
		RunE: runE(func(cmd *cobra.Command, _ []string) error {
			return show(a, cmd.Context(), http.MethodGet, "/api/v1/event-streams", nil, func(w io.Writer, ans struct{ Streams []eventStream }) error {
				return tableOf(w, []string{"ID", "DELIVERY", "AUDIENCE", "PENDING", "LAST ERROR"}, ans.Streams, func(s eventStream) []string {
					return []string{s.ID, s.Delivery, s.Audience, fmt.Sprint(s.Pending), s.LastError}
				})
			})
		}),
	}

	var audience string
	var maxEvents int
	poll := &cobra.Command{
		Use:   "poll STREAM --audience A [--max 100]",
		Short: "Fetch a polled stream's events, verify each against the server's keys, and acknowledge them (access)",
		Long: `Poll fetches the stream's pending Security Event Tokens (RFC 8936), verifies each one's
signature against the server's JWKS, its issuer and its audience (with the posture package a
messaging backend uses), prints the verified events and acknowledges them. A SET that does not
verify (a wrong --audience, say) is left pending for the real receiver and makes poll exit 6.`,
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
			err = tableOf(a.stdout, []string{"JTI", "EVENT", "DEVICE", "STATUS", "REASON", "AT"}, events, func(e polledEvent) []string {
				return []string{e.JTI, e.Type, e.Device, e.Status, e.Reason, ts(e.At)}
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
	poll.Flags().StringVar(&audience, "audience", "", "the stream's audience, which every SET must carry")
	poll.Flags().IntVar(&maxEvents, "max", 100, "most events to fetch (1-1000)")
	_ = poll.MarkFlagRequired("audience")

	cmd.AddCommand(create, list, poll)
	return cmd
}

// polledEvent is one event of a polled SET, after verification.
type polledEvent struct {
	JTI    string    `json:"jti"`
	Type   string    `json:"event"` // the event type's last path element: session-revoked, ...
	Device string    `json:"device_id,omitempty"`
	Status string    `json:"current_status,omitempty"`
	Reason string    `json:"reason_code,omitempty"`
	At     time.Time `json:"event_time,omitzero"`
	Error  string    `json:"error,omitempty"` // why the SET was rejected
}

// pollEvents fetches, verifies and acknowledges a stream's pending SETs.
func pollEvents(ctx context.Context, c *client, stream, audience string, max int) ([]polledEvent, error) {
	if max < 1 || max > 1000 {
		return nil, usagef("--max must be 1 to 1000")
	}
	var conf struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	if err := c.do(ctx, http.MethodGet, "/.well-known/ssf-configuration", nil, &conf); err != nil {
		return nil, err
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
			e.Device, e.Status, e.Reason = set.SubID.ID, ev.CurrentStatus, ev.ReasonCode
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
