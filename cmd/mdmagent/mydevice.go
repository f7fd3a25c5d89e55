package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/halemdm/hale/agent"
	"github.com/halemdm/hale/agent/state"
)

// deviceAgent opens the enrolled agent for a one-shot request with the device's certificate.
func (g *globals) deviceAgent() (*agent.Agent, error) {
	store, err := state.OpenExisting(g.stateDir)
	if err != nil {
		return nil, err
	}
	return agent.New(store, agent.HostCollector(), agent.WithLogger(g.logger()))
}

func myDeviceCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "my-device",
		Short: "print a link to this device's page: its status, what to fix, check again, emergency access",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			a, err := g.deviceAgent()
			if err != nil {
				return err
			}
			l, err := a.MyDeviceLink(cmd.Context())
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s\n(valid until %s; open it in your browser)\n", l.URL, l.ExpiresAt.Local().Format(time.Kitchen))
			return nil
		},
	}
}

func breakGlassCmd(g *globals) *cobra.Command {
	var reason, duration string
	c := &cobra.Command{
		Use:   "break-glass --reason TEXT [--duration 2h]",
		Short: "open emergency access for this device when patient care cannot wait (the security team reviews every use)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			a, err := g.deviceAgent()
			if err != nil {
				return err
			}
			u, err := a.BreakGlass(cmd.Context(), reason, duration)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "emergency access %s is open until %s\n", u.ID, u.ExpiresAt.Local().Format(time.RFC1123))
			return nil
		},
	}
	c.Flags().StringVar(&reason, "reason", "", "why care cannot wait (on the audit record)")
	c.Flags().StringVar(&duration, "duration", "", "how long (default and most: the policy's)")
	return c
}
