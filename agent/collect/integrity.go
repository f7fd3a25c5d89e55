package collect

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// collectAgentIntegrity checks the agent's own files on Unix. AgentTampered is true when the
// agent binary or config, or the directory holding either, could be replaced by someone other
// than root: not owned by root, or writable by group or others (a sticky directory such as /tmp
// only lets owners replace their own files, so it passes).
//
// Jailbroken has no reliable meaning on a Linux or macOS machine, whose owner may well be root.
// The agent reports only the one indicator it can check without guessing: true when its state
// directory (device key and certificate) is writable by someone other than root, since then an
// unprivileged user can substitute the device's identity. Otherwise it reports false.
func collectAgentIntegrity(_ context.Context, env *Env) (Partial, error) {
	var p Partial
	var errs []error
	if env.AgentBinary == "" {
		errs = append(errs, errors.New("agent binary path unknown; tamper state unknown"))
	} else {
		tampered := false
		var terr error
		for _, f := range []string{env.AgentBinary, env.AgentConfig} {
			if f == "" {
				continue
			}
			for _, q := range []string{f, filepath.Dir(f)} {
				bad, err := rootOnly(q)
				if err != nil {
					terr = err
				}
				tampered = tampered || bad
			}
		}
		switch {
		case tampered:
			// A file anyone can replace is tampered with, whatever else failed.
			p.AgentTampered = observe(env, true)
		case terr != nil:
			errs = append(errs, terr)
		default:
			p.AgentTampered = observe(env, false)
		}
	}
	if env.StateDir != "" {
		bad, err := rootOnly(env.StateDir)
		if err != nil {
			errs = append(errs, err)
		} else {
			p.Jailbroken = observe(env, bad)
		}
	}
	return p, errors.Join(errs...)
}

// rootOnly reports whether name (a host path, not resolved in the collection root: these are
// the agent's own files) can be changed by someone other than root.
func rootOnly(name string) (writableByOthers bool, err error) {
	fi, err := os.Stat(name)
	if err != nil {
		return false, fmt.Errorf("tamper check: %w", err)
	}
	uid, ok := fileOwner(fi)
	if !ok {
		return false, fmt.Errorf("tamper check: owner of %s unknown on this OS", name)
	}
	writable := fi.Mode().Perm()&0o022 != 0
	if fi.IsDir() && fi.Mode()&fs.ModeSticky != 0 {
		writable = false
	}
	return uid != 0 || writable, nil
}
