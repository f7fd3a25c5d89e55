// Command mdmctl is Hale's admin command line: enrollments, devices, policies, lock, lost mode
// and wipe, approvals, audit log verification, access checks, API tokens and the lost-device
// drill, all through the server's /api/v1 with a bearer token.
//
//	mdmctl login --server URL --token T --ca-fingerprint HEX
//	mdmctl devices list --group ward7
//	mdmctl wipe DEVICE --reason stolen --mode full
//	mdmctl audit verify --checkpoint cp.txt --key audit.pub
//
// Connection settings come from flags, then HALE_* environment variables, then the profile that
// `mdmctl login` saved. Exit status: see the exit* constants (and `mdmctl --help`).
package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/halemdm/hale/internal/buildinfo"
)

// Exit statuses. Scripts depend on them: keep them stable.
const (
	exitOK       = 0 // success
	exitError    = 1 // anything else: network, a 5xx, a local file that cannot be read
	exitUsage    = 2 // bad flags or arguments, missing confirmation, a request refused as invalid (400)
	exitAuth     = 3 // not authenticated or not allowed (401, 403), no token
	exitNotFound = 4 // no such device, policy, token... (404)
	exitConflict = 5 // conflict or invalid state (409, 412, 422)
	exitVerify   = 6 // verification failed: audit verify, the drill, a CA fingerprint
)

const exitHelp = `Exit status:
  0  success
  1  other error (network, server error 5xx, local I/O)
  2  usage: bad flags or arguments, missing confirmation, a request the server
     refused as invalid (400, 413, 415)
  3  not authenticated or not allowed (401, 403), or no token
  4  not found (404)
  5  conflict or invalid state (409, 412, 422)
  6  verification failed (audit verify, drill, CA fingerprint)

Environment: HALE_SERVER, HALE_TOKEN, HALE_CA_FILE, HALE_PROFILE, HALE_CONFIG (the profile
file; default $XDG_CONFIG_HOME/hale/mdmctl.json or ~/.config/hale/mdmctl.json).
Precedence: flags, then environment, then the profile saved by "mdmctl login". A profile's token
and CA are used only for the profile's own server.`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := newApp().run(ctx, os.Args[1:])
	stop()
	os.Exit(code)
}

// app is one invocation of mdmctl: its streams, its environment and its global flags. Tests
// build one with their own streams and environment and call run.
type app struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
	// isTerminal reports whether stdin is an interactive terminal (wipe confirmation).
	isTerminal func() bool
	now        func() time.Time
	// pollInterval is how often the drill polls; tests shorten it.
	pollInterval time.Duration
	// wrapTransport, when not nil, wraps the transport of every HTTP client mdmctl makes (see
	// httpClient). Tests set it to check each exchange against the server's OpenAPI document;
	// it is nil in production.
	wrapTransport func(http.RoundTripper) http.RoundTripper

	// Global flags.
	server, token, caFile, profile, output string

	in *bufio.Reader
}

func newApp() *app {
	return &app{
		stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv,
		isTerminal: func() bool {
			fi, err := os.Stdin.Stat()
			return err == nil && fi.Mode()&os.ModeCharDevice != 0
		},
		now:          time.Now,
		pollInterval: time.Second,
	}
}

// run executes the command line args and returns the exit status. Errors are printed here.
func (a *app) run(ctx context.Context, args []string) int {
	root := a.rootCommand()
	root.SetArgs(args)
	root.SetIn(a.stdin)
	root.SetOut(a.stdout)
	root.SetErr(a.stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	a.printError(err)
	return exitCode(err)
}

func (a *app) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "mdmctl",
		Short: "Administer a Hale server",
		Long: "mdmctl administers a Hale MDM server through its admin API (/api/v1).\n\n" +
			"Start with: mdmctl login --server https://mdm.example.org:8443 --token TOKEN --ca-fingerprint HEX\n\n" + exitHelp,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			if a.output != "table" && a.output != "json" {
				return usagef("-o must be table or json, not %q", a.output)
			}
			return nil
		},
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	f := root.PersistentFlags()
	f.StringVar(&a.server, "server", "", "server URL, like https://mdm.example.org:8443 (env HALE_SERVER)")
	f.StringVar(&a.token, "token", "", "API bearer token (env HALE_TOKEN)")
	f.StringVar(&a.caFile, "ca-file", "", "PEM file of the CA that signs the server's certificate (env HALE_CA_FILE)")
	f.StringVar(&a.profile, "profile", "", "profile saved by login (env HALE_PROFILE; default: the last one logged in)")
	f.StringVarP(&a.output, "output", "o", "table", "output: table or json (the server's JSON, for scripts)")

	root.AddCommand(
		a.loginCommand(),
		a.enrollCommand(),
		a.devicesCommand(),
		a.commandsCommand(),
		a.accessCommand(),
		a.policyCommand(),
		a.securityCommand("lock"),
		a.securityCommand("lost-mode"),
		a.securityCommand("wipe"),
		a.approveCommand(),
		a.approvalsCommand(),
		a.breakGlassCommand(),
		a.auditCommand(),
		a.backupCommand(),
		a.evidenceCommand(),
		a.drillCommand(),
		a.eventsCommand(),
		a.tokensCommand(),
		a.pushcertCommand(),
		a.androidCommand(),
		a.packageCommand(),
		&cobra.Command{
			Use:   "version",
			Short: "Print the version",
			Args:  cobra.NoArgs,
			Run:   func(cmd *cobra.Command, _ []string) { fmt.Fprintln(a.stdout, buildinfo.String()) },
		},
	)
	return root
}

// group is a command that only holds subcommands: an unknown subcommand is a usage error
// (cobra would print the help and succeed).
func group(use, short string, aliases ...string) *cobra.Command {
	return &cobra.Command{
		Use: use, Short: short, Aliases: aliases,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef("unknown command %q for %q", args[0], cmd.CommandPath())
			}
			return cmd.Help()
		},
	}
}

// Errors carry their exit status. Errors cobra makes itself (unknown command, wrong number of
// arguments, a missing required flag) are usage errors; errors from a command's own work are
// wrapped by runE so they are never mistaken for one.

// usageError is a mistake in the command line.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// verifyError is a failed verification: the audit log, a drill step, a CA fingerprint.
type verifyError struct{ err error }

func (e verifyError) Error() string { return e.err.Error() }
func (e verifyError) Unwrap() error { return e.err }

// codedError carries an exit status decided by the command.
type codedError struct {
	code int
	err  error
}

func (e codedError) Error() string { return e.err.Error() }
func (e codedError) Unwrap() error { return e.err }

// runError marks an error as coming from a command's work rather than from cobra.
type runError struct{ err error }

func (e runError) Error() string { return e.err.Error() }
func (e runError) Unwrap() error { return e.err }

// runE adapts a command body: its errors are classified by exitCode, not taken as usage.
func runE(fn func(cmd *cobra.Command, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		if err := fn(cmd, args); err != nil {
			return runError{err}
		}
		return nil
	}
}

// exitCode maps an error to the process exit status.
func exitCode(err error) int {
	var (
		ue usageError
		ve verifyError
		ce codedError
		ae *apiError
		re runError
	)
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ue):
		return exitUsage
	case errors.As(err, &ve):
		return exitVerify
	case errors.As(err, &ce):
		return ce.code
	case errors.As(err, &ae):
		return ae.exitCode()
	case errors.As(err, &re):
		return exitError
	default:
		return exitUsage // cobra's own errors: flags, arguments, unknown commands
	}
}

// printError writes err to stderr: problems as "error: <title>: <detail> (request <id>)" with
// any field errors below.
func (a *app) printError(err error) {
	var ae *apiError
	if errors.As(err, &ae) {
		fmt.Fprintln(a.stderr, "error:", ae.Error())
		for _, fe := range ae.problem.Errors {
			line := ""
			if fe.Line > 0 {
				line = fmt.Sprintf(" (line %d)", fe.Line)
			}
			fmt.Fprintf(a.stderr, "  %s%s: %s\n", sanitize(fe.Field), line, sanitize(fe.Message))
		}
		return
	}
	// An error may quote what a device or the server wrote (a command's result detail).
	msg := sanitize(err.Error())
	switch exitCode(err) {
	case exitVerify:
		fmt.Fprintln(a.stderr, "verification FAILED:", msg)
	case exitUsage:
		fmt.Fprintln(a.stderr, "error:", msg)
		fmt.Fprintln(a.stderr, "run 'mdmctl --help' or 'mdmctl COMMAND --help' for usage")
	default:
		fmt.Fprintln(a.stderr, "error:", msg)
	}
}

// readLine reads one line from stdin, without the line ending.
func (a *app) readLine() (string, error) {
	if a.in == nil {
		a.in = bufio.NewReader(io.LimitReader(a.stdin, 64<<10))
	}
	s, err := a.in.ReadString('\n')
	if err != nil && (err != io.EOF || s == "") {
		return "", err
	}
	return strings.TrimRight(s, "\r\n"), nil
}
