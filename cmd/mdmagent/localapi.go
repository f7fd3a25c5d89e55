package main

import (
	"context"
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/halemdm/hale/agent"
	"github.com/halemdm/hale/agent/localapi"
)

// localFlags configure the local endpoint desktop apps get their tokens from.
type localFlags struct {
	apps    []string // allowed executables; none: the endpoint is off
	users   []string // allowed accounts besides the signed-in ones
	address string
	signed  bool // Windows: the executables must carry a valid Authenticode signature
}

func (f *localFlags) add(c *cobra.Command) {
	c.Flags().StringArrayVar(&f.apps, "app-allow", nil,
		"executable (absolute path) that may get key-bound posture tokens on the local endpoint (repeatable; none: the endpoint is off)")
	c.Flags().StringArrayVar(&f.users, "app-user", nil,
		"account (name or UID/SID) served besides the users signed in at the computer (repeatable)")
	c.Flags().BoolVar(&f.signed, "app-require-signature", false,
		"Windows: also require a valid Authenticode signature of the app's executable (no cgo-free check elsewhere)")
	c.Flags().StringVar(&f.address, "local-socket", localapi.DefaultAddress(), "the local endpoint's Unix socket path or named pipe")
}

// args are the flags again, for the installed service's command line.
func (f *localFlags) args() []string {
	var out []string
	for _, a := range f.apps {
		out = append(out, "--app-allow", a)
	}
	for _, u := range f.users {
		out = append(out, "--app-user", u)
	}
	if f.signed {
		out = append(out, "--app-require-signature")
	}
	if len(f.apps) > 0 && f.address != localapi.DefaultAddress() {
		out = append(out, "--local-socket", f.address)
	}
	return out
}

// serveLocal runs the local endpoint for a until ctx ends, when it has executables to serve.
// A problem with it is logged and leaves it off: it must never stop the agent reporting
// posture, and with no endpoint no app gets a token (fail closed).
func serveLocal(ctx context.Context, a *agent.Agent, f localFlags, log *slog.Logger) {
	if len(f.apps) == 0 {
		return
	}
	var exes []string
	for _, p := range f.apps {
		real, err := localapi.CheckExecutable(p)
		if err != nil {
			log.Error("local endpoint: not serving an allowed executable", "err", err)
			continue
		}
		exes = append(exes, real)
	}
	if len(exes) == 0 {
		log.Error("local endpoint: off, no allowed executable can be trusted")
		return
	}
	opts := []localapi.Option{localapi.WithAllowedExecutables(exes...), localapi.WithAllowedUsers(f.users...), localapi.WithLogger(log)}
	if f.signed {
		opts = append(opts, localapi.WithRequireSignature())
	}
	srv, err := localapi.New(a, opts...)
	if err != nil {
		log.Error("local endpoint: off", "err", err)
		return
	}
	ln, err := localapi.Listen(f.address)
	if err != nil {
		log.Error("local endpoint: off", "err", err)
		return
	}
	log.Info("local endpoint listening", "address", f.address, "executables", exes, "users", f.users)
	if err := srv.Serve(ctx, ln); err != nil {
		log.Error("local endpoint stopped", "err", err)
	}
}
