// Command mdmagent is Hale's compliance agent: it enrolls the device, reports its security
// posture over mTLS, runs lock and selective-wipe commands, and installs itself as a service.
//
//	mdmagent enroll --server URL --token T [--ca-fingerprint HEX] [--force]
//	mdmagent run [--wipe-root DIR]... [--enroll-file F]   the daemon (what the service runs)
//	mdmagent posture [--root DIR] [-o json|table]
//	mdmagent install [--wipe-root DIR]... [--enroll-file F] | uninstall [--purge] | start | stop | status
//	mdmagent version
//
// Every command takes --state-dir (default /var/lib/hale-agent, /Library/Application
// Support/Hale Agent, %ProgramData%\Hale\Agent). `uninstall` removes the unit or init script
// and its links but keeps the state directory, so a reinstall keeps the enrollment;
// `uninstall --purge` removes the state directory too (the device key with it).
//
// Exit status: 0 on success and after a selective wipe (the agent removed its key and state and
// must not be restarted), 78 from `run` on a device that is not enrolled (the systemd unit does
// not restart on it), 1 otherwise. The logic lives in package agent; this is the command line.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/halemdm/hale/agent"
	"github.com/halemdm/hale/agent/collect"
	"github.com/halemdm/hale/agent/service"
	"github.com/halemdm/hale/agent/state"
	"github.com/halemdm/hale/internal/buildinfo"
	"github.com/halemdm/hale/policies"
)

func main() {
	err := newRoot().Execute()
	var ee exitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		fmt.Fprintln(os.Stderr, "mdmagent:", ee.err)
		os.Exit(ee.code)
	default:
		fmt.Fprintln(os.Stderr, "mdmagent:", err)
		os.Exit(1)
	}
}

// exitError carries a specific exit status (78: not enrolled, so the service is not restarted).
type exitError struct {
	code int
	err  error
}

func (e exitError) Error() string { return e.err.Error() }

type globals struct {
	stateDir string
	logLevel string
	name     string
}

func (g *globals) logger() *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(g.logLevel))
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
}

func (g *globals) serviceConfig(wipeRoots []string) (service.Config, error) {
	exe, err := os.Executable()
	if err == nil {
		exe, err = filepath.EvalSymlinks(exe)
	}
	if err != nil {
		return service.Config{}, fmt.Errorf("finding the mdmagent executable: %w", err)
	}
	dir, err := filepath.Abs(g.stateDir)
	if err != nil {
		return service.Config{}, err
	}
	return service.Config{Name: g.name, Executable: exe, StateDir: dir, WipeRoots: wipeRoots}, nil
}

func newRoot() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:           "mdmagent",
		Short:         "Hale compliance agent",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&g.stateDir, "state-dir", state.DefaultDir(), "state directory (device key, certificate, journal)")
	root.PersistentFlags().StringVar(&g.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	root.PersistentFlags().StringVar(&g.name, "service-name", service.DefaultName, "service name")
	root.AddCommand(enrollCmd(g), runCmd(g), postureCmd(), statusCmd(g), versionCmd(), installCmd(g), uninstallCmd(g),
		myDeviceCmd(g), breakGlassCmd(g),
		controlCmd(g, "start", "start the installed service", service.Start),
		controlCmd(g, "stop", "stop the running service", service.Stop))
	return root
}

func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

func enrollCmd(g *globals) *cobra.Command {
	var cfg agent.EnrollConfig
	c := &cobra.Command{
		Use:   "enroll --server URL --token T [--ca-fingerprint HEX] [--force]",
		Short: "enroll this device with a Hale server",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := signalContext()
			defer cancel()
			store, err := state.Open(g.stateDir)
			if err != nil {
				return err
			}
			cctx, ccancel := context.WithTimeout(ctx, 30*time.Second)
			p, _ := collect.Collect(cctx, collect.WithStateDir(store.Dir()))
			ccancel()
			cfg.Facts = agent.HostFacts(p)
			cfg.Logger = g.logger()
			id, err := agent.Enroll(ctx, store, cfg)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "enrolled as %s with %s (CA sha256 %s); state in %s\n",
				id.DeviceID, id.ServerURL, id.CAFingerprint, store.Dir())
			return nil
		},
	}
	c.Flags().StringVar(&cfg.ServerURL, "server", "", "server URL (https://host:port)")
	c.Flags().StringVar(&cfg.Token, "token", "", "enrollment token")
	c.Flags().StringVar(&cfg.CAFingerprint, "ca-fingerprint", "", "SHA-256 of the server's root CA (hex, colons optional)")
	c.Flags().BoolVar(&cfg.Force, "force", false, "discard an existing enrollment and enroll again")
	_ = c.MarkFlagRequired("server")
	_ = c.MarkFlagRequired("token")
	return c
}

func runCmd(g *globals) *cobra.Command {
	var wipeRoots []string
	var local localFlags
	var postureRoot, enrollFile string
	c := &cobra.Command{
		Use:   "run",
		Short: "run the agent (under the service manager, or in the foreground)",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			cfg, err := g.serviceConfig(wipeRoots)
			if err != nil {
				return err
			}
			err = service.Run(cfg, func(ctx context.Context) error {
				if enrollFile != "" {
					// An installed package's first start: enroll with its credential (retried
					// until the server answers), unless an enrollment is kept already.
					store, err := state.Open(g.stateDir)
					if err != nil {
						return err
					}
					facts := func(ctx context.Context) agent.Facts {
						cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
						defer cancel()
						p, _ := collect.Collect(cctx, collect.WithStateDir(store.Dir()))
						return agent.HostFacts(p)
					}
					if err := agent.EnrollFromFile(ctx, store, enrollFile, facts, g.logger(), 5*time.Second, 5*time.Minute); err != nil {
						return err
					}
				}
				store, err := state.OpenExisting(g.stateDir)
				if err != nil {
					return err
				}
				opts := []agent.Option{agent.WithLogger(g.logger())}
				if len(wipeRoots) > 0 {
					opts = append(opts, agent.WithWipeRoots(wipeRoots...))
				}
				copts := []collect.Option{collect.WithStateDir(store.Dir()), collect.WithLogger(g.logger())}
				if postureRoot != "" {
					copts = append(copts, collect.WithRoot(postureRoot))
				}
				a, err := agent.New(store, agent.HostCollector(copts...), opts...)
				if err != nil {
					return err
				}
				g.logger().Info("agent running", "device_id", a.DeviceID(), "state_dir", store.Dir())
				lctx, stop := context.WithCancel(ctx)
				done := make(chan struct{})
				go func() { defer close(done); serveLocal(lctx, a, local, g.logger()) }()
				defer func() { stop(); <-done }()
				return a.Run(ctx)
			}, func(err error) bool { return errors.Is(err, agent.ErrWiped) })
			switch {
			case errors.Is(err, agent.ErrWiped):
				return nil
			case errors.Is(err, state.ErrNotEnrolled):
				return exitError{code: service.ExitNotEnrolled, err: err}
			}
			return err
		},
	}
	c.Flags().StringArrayVar(&wipeRoots, "wipe-root", nil, "directory under which a selective wipe may remove data (repeatable; default per OS)")
	local.add(c)
	c.Flags().StringVar(&enrollFile, "enroll-file", "", "enroll on first start with this installer's enrollment file (server_url, token, ca_fingerprint)")
	// Like posture --root: collect from a fixture tree standing for /. For tests and demos, so
	// hidden; the posture is self-reported either way (provenance "agent").
	c.Flags().StringVar(&postureRoot, "posture-root", "", "collect posture from this directory instead of / (tests)")
	_ = c.Flags().MarkHidden("posture-root")
	return c
}

func postureCmd() *cobra.Command {
	var root, format string
	c := &cobra.Command{
		Use:   "posture [--root DIR] [-o json|table]",
		Short: "print the posture this agent would report",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := signalContext()
			defer cancel()
			var opts []collect.Option
			if root != "" {
				opts = append(opts, collect.WithRoot(root))
			}
			p, errs := agent.HostCollector(opts...)(ctx)
			out := cmd.OutOrStdout()
			switch format {
			case "json":
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(struct {
					Posture any                    `json:"posture"`
					Errors  []agent.CollectorError `json:"errors,omitempty"`
				}{p, errs})
			case "table":
				return printTable(out, p, errs)
			}
			return fmt.Errorf("unknown output format %q (json or table)", format)
		},
	}
	c.Flags().StringVar(&root, "root", "", "inspect a mounted system image at DIR instead of /")
	c.Flags().StringVarP(&format, "output", "o", "json", "output format: json or table")
	return c
}

func statusCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "show the service state and the enrollment",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := cmd.OutOrStdout()
			cfg, err := g.serviceConfig(nil)
			if err != nil {
				return err
			}
			st, err := service.Status(cfg)
			if err != nil {
				st = st + " (" + err.Error() + ")"
			}
			fmt.Fprintf(out, "service:    %s (%s)\n", st, service.Platform())
			store, err := state.OpenExisting(g.stateDir)
			var id *state.Identity
			if err == nil {
				id, err = store.LoadIdentity()
			}
			if err != nil {
				fmt.Fprintf(out, "enrollment: %v\n", err)
				return nil
			}
			fmt.Fprintf(out, "device:     %s\nserver:     %s\nenrolled:   %s\nCA sha256:  %s\n", id.DeviceID, id.ServerURL,
				id.EnrolledAt.Format(time.RFC3339), id.CAFingerprint)
			if b, err := store.ReadFile(state.CertFile); err == nil {
				if certs, err := state.ParseChain(b); err == nil {
					fmt.Fprintf(out, "cert until: %s\n", certs[0].NotAfter.UTC().Format(time.RFC3339))
				}
			}
			return nil
		},
	}
}

func versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "print the version",
		Args:  cobra.NoArgs,
		Run:   func(cmd *cobra.Command, _ []string) { fmt.Fprintln(cmd.OutOrStdout(), "mdmagent", buildinfo.String()) },
	}
}

func installCmd(g *globals) *cobra.Command {
	var wipeRoots []string
	var local localFlags
	var enrollFile string
	c := &cobra.Command{
		Use:   "install",
		Short: "install the agent as a system service (enabled at boot, not started)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(wipeRoots) == 0 {
				wipeRoots = agent.DefaultWipeRoots(runtime.GOOS)
			}
			cfg, err := g.serviceConfig(wipeRoots)
			if err != nil {
				return err
			}
			cfg.ExtraArgs = append(cfg.ExtraArgs, local.args()...)
			if enrollFile != "" {
				if _, err := agent.ReadEnrollFile(enrollFile); err != nil {
					return err
				}
				cfg.ExtraArgs = append(cfg.ExtraArgs, "--enroll-file", enrollFile)
			}
			if err := service.Install(cfg); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "installed %s (%s); start it with `mdmagent start`\n", cfg.Name, service.Platform())
			return nil
		},
	}
	c.Flags().StringArrayVar(&wipeRoots, "wipe-root", nil, "directory under which a selective wipe may remove data (repeatable; default per OS); made writable in the service sandbox")
	local.add(c)
	c.Flags().StringVar(&enrollFile, "enroll-file", "", "the service enrolls on first start with this enrollment file (what installers pass)")
	return c
}

func uninstallCmd(g *globals) *cobra.Command {
	var purge bool
	c := &cobra.Command{
		Use:   "uninstall [--purge]",
		Short: "stop and remove the service; --purge also removes the state directory (device key and enrollment)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := g.serviceConfig(nil)
			if err != nil {
				return err
			}
			if err := service.Uninstall(cfg, purge); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "uninstalled %s\n", cfg.Name)
			return nil
		},
	}
	c.Flags().BoolVar(&purge, "purge", false, "also remove the state directory (the device must then enroll again)")
	return c
}

func controlCmd(g *globals, use, short string, fn func(service.Config) error) *cobra.Command {
	return &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			cfg, err := g.serviceConfig(nil)
			if err != nil {
				return err
			}
			return fn(cfg)
		},
	}
}

// printTable writes the posture table and then the collectors that failed.
func printTable(w io.Writer, p *policies.Posture, errs []agent.CollectorError) error {
	if err := collect.Table(w, p); err != nil {
		return err
	}
	for _, e := range errs {
		fmt.Fprintf(w, "error: %s: %s\n", e.Collector, e.Error)
	}
	return nil
}
