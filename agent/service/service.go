// Package service installs and runs mdmagent as a system service through
// github.com/kardianos/service: a hardened systemd unit, a launchd daemon, a Windows service, or
// the SysV init script where there is no systemd. The unit and plist are rendered here (not by
// the library's templates) so that tests can check exactly what gets installed.
package service

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"syscall"

	ks "github.com/kardianos/service"
)

// DefaultName is the service name.
const DefaultName = "hale-agent"

// ExitNotEnrolled is the exit status of `run` on a device that is not (or no longer) enrolled:
// the unit does not restart it.
const ExitNotEnrolled = 78

// Config describes the installed service.
type Config struct {
	Name        string
	Description string
	// Executable is the absolute path of mdmagent.
	Executable string
	// StateDir is passed to `run --state-dir`.
	StateDir string
	// WipeRoots are the directories under which a selective wipe may remove data: passed to
	// `run --wipe-root` and made writable in the systemd sandbox.
	WipeRoots []string
	// ExtraArgs are appended to the run command line.
	ExtraArgs []string
}

func (c *Config) description() string {
	if c.Description != "" {
		return c.Description
	}
	return "Hale compliance agent"
}

func (c *Config) runArgs() []string {
	args := []string{"run", "--state-dir", c.StateDir}
	for _, r := range c.WipeRoots {
		args = append(args, "--wipe-root", r)
	}
	return append(args, c.ExtraArgs...)
}

func (c *Config) serviceConfig() (*ks.Config, error) {
	if err := c.check(); err != nil {
		return nil, err
	}
	unit, err := SystemdUnit(*c)
	if err != nil {
		return nil, err
	}
	plist, err := LaunchdPlist(*c)
	if err != nil {
		return nil, err
	}
	return &ks.Config{
		Name:        c.Name,
		DisplayName: "Hale Agent",
		Description: c.description(),
		Executable:  c.Executable,
		Arguments:   c.runArgs(),
		Option: ks.KeyValue{
			// Rendered text without template actions: the library writes it verbatim.
			"SystemdScript":          unit,
			"LaunchdConfig":          plist,
			"OnFailure":              "restart",
			"OnFailureDelayDuration": "5s",
			"StartType":              "automatic",
			"DelayedAutoStart":       true,
		},
	}, nil
}

// program adapts a run function to the service library's Start/Stop.
type program struct {
	run    func(context.Context) error
	wiped  func(error) bool
	cancel context.CancelFunc
	done   chan struct{}
	err    error
}

func (p *program) Start(ks.Service) error {
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	go func() {
		defer close(p.done)
		p.err = p.run(ctx)
		if ctx.Err() == nil && runtime.GOOS == "windows" && !ks.Interactive() {
			// The Windows service manager does not use RunWait: a run that ended on its own
			// (a selective wipe, or not enrolled) ends the service process here.
			code := 0
			if p.err != nil && !p.wiped(p.err) {
				code = 1
			}
			os.Exit(code)
		}
	}()
	return nil
}

func (p *program) Stop(ks.Service) error {
	p.cancel()
	<-p.done
	return nil
}

// wait blocks until a stop signal or until the run function ends on its own (a wipe).
func (p *program) wait() {
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
	defer signal.Stop(sig)
	select {
	case <-sig:
	case <-p.done:
	}
}

// Run runs fn under the service manager (or in the foreground) until it is stopped or fn
// returns; it returns fn's error. clean reports whether an error fn returned on its own is a
// clean end (a wipe), which matters where the service manager sees only the exit status.
func Run(c Config, fn func(context.Context) error, clean func(error) bool) error {
	sc, err := c.serviceConfig()
	if err != nil {
		return err
	}
	if clean == nil {
		clean = func(error) bool { return false }
	}
	p := &program{run: fn, wiped: clean, done: make(chan struct{})}
	sc.Option["RunWait"] = p.wait
	s, err := ks.New(p, sc)
	if err != nil {
		return fmt.Errorf("service: %w", err)
	}
	if err := s.Run(); err != nil {
		return fmt.Errorf("service: %w", err)
	}
	return p.err
}

func newService(c Config) (ks.Service, error) {
	sc, err := c.serviceConfig()
	if err != nil {
		return nil, err
	}
	s, err := ks.New(&program{done: make(chan struct{})}, sc)
	if err != nil {
		return nil, fmt.Errorf("service: %w", err)
	}
	return s, nil
}

// Platform names the service system in use ("linux-systemd", "unix-systemv", "darwin-launchd",
// "windows-service").
func Platform() string { return ks.ChosenSystem().String() }

// Install installs the service (unit file or init script, enabled at boot). It does not start it.
func Install(c Config) error {
	s, err := newService(c)
	if err != nil {
		return err
	}
	if err := s.Install(); err != nil {
		return fmt.Errorf("service: installing %s: %w", c.Name, err)
	}
	return nil
}

// Uninstall stops and removes the service so that nothing of it is left: the unit or init
// script, and the SysV runlevel links the library creates but does not remove. With purge the
// state directory (device key, certificate, journal) goes too; without it a reinstall keeps the
// enrollment.
func Uninstall(c Config, purge bool) error {
	s, err := newService(c)
	if err != nil {
		return err
	}
	_ = s.Stop() // not running is fine
	if err := s.Uninstall(); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("service: uninstalling %s: %w", c.Name, err)
	}
	if Platform() == "unix-systemv" {
		for _, l := range sysvLinks(c.Name) {
			if err := os.Remove(l); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("service: removing %s: %w", l, err)
			}
		}
	}
	if purge {
		if err := os.RemoveAll(c.StateDir); err != nil {
			return fmt.Errorf("service: removing the state directory: %w", err)
		}
	}
	return nil
}

// sysvLinks are the runlevel links the SysV backend creates for name.
func sysvLinks(name string) []string {
	var out []string
	for _, l := range []string{"2", "3", "4", "5"} {
		out = append(out, filepath.Join("/etc", "rc"+l+".d", "S50"+name))
	}
	for _, l := range []string{"0", "1", "6"} {
		out = append(out, filepath.Join("/etc", "rc"+l+".d", "K02"+name))
	}
	return out
}

// Start starts the installed service.
func Start(c Config) error { return control(c, ks.Service.Start, "starting") }

// Stop stops the running service.
func Stop(c Config) error { return control(c, ks.Service.Stop, "stopping") }

func control(c Config, fn func(ks.Service) error, what string) error {
	s, err := newService(c)
	if err != nil {
		return err
	}
	if err := fn(s); err != nil {
		return fmt.Errorf("service: %s %s: %w", what, c.Name, err)
	}
	return nil
}

// Status returns "running", "stopped" or "not installed".
func Status(c Config) (string, error) {
	s, err := newService(c)
	if err != nil {
		return "", err
	}
	st, err := s.Status()
	var exit *exec.ExitError
	if err != nil && Platform() == "unix-systemv" && errors.As(err, &exit) {
		// The SysV script answers "Stopped" with exit status 1, which the library reports as
		// an error; the script's presence tells installed-and-stopped from not installed.
		_, serr := os.Stat("/etc/init.d/" + c.Name)
		switch {
		case errors.Is(serr, fs.ErrNotExist):
			return "not installed", nil
		case serr == nil && exit.ExitCode() == 1:
			return "stopped", nil
		}
	}
	switch {
	case errors.Is(err, ks.ErrNotInstalled):
		return "not installed", nil
	case err != nil:
		return "unknown", fmt.Errorf("service: status of %s: %w", c.Name, err)
	case st == ks.StatusRunning:
		return "running", nil
	case st == ks.StatusStopped:
		return "stopped", nil
	}
	return "unknown", nil
}
