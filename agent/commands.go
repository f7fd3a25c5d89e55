package agent

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/halemdm/hale/agent/state"
)

// commandLoop long-polls for commands and runs them. It returns errWipeDone after a wipe that
// acted, and nil when ctx ends.
func (a *Agent) commandLoop(ctx context.Context) error {
	failures := 0
	for ctx.Err() == nil {
		a.flushResults(ctx)
		start := time.Now()
		cmds, err := a.poll(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			failures++
			d := a.backoff(failures)
			a.log.Warn("command poll failed", "err", err, "retry_in", d)
			a.emit(Event{Kind: "poll-failed", Err: err})
			sleep(ctx, d)
			continue
		}
		failures = 0
		for _, c := range cmds {
			if err := a.handle(ctx, c); errors.Is(err, errWipeDone) {
				return err
			}
		}
		// A server that answers the long poll at once must not make the agent spin.
		if len(cmds) == 0 && time.Since(start) < a.pollMinGap {
			sleep(ctx, a.pollMinGap)
		}
	}
	return nil
}

func (a *Agent) poll(ctx context.Context) ([]Command, error) {
	var resp commandsResponse
	path := "/agent/v1/commands?wait=" + url.QueryEscape(a.pollWait.String())
	// The server holds the request up to the wait; give it that plus the ordinary timeout.
	if err := a.client.do(ctx, a.pollWait+a.requestTimeout, http.MethodGet, path, nil, &resp); err != nil {
		return nil, err
	}
	return resp.Commands, nil
}

// handle runs one command at most once per ID: the journal records "started" before acting and
// "done" with the result before reporting, so a command already done is only re-reported.
func (a *Agent) handle(ctx context.Context, c Command) error {
	e, err := a.store.Entry(c.ID)
	if err != nil {
		// The commands are idempotent, so a corrupt entry costs a re-run, not a wrong answer.
		a.log.Warn("command journal entry unreadable; running the command again", "id", c.ID, "err", err)
		e = nil
	}
	if e != nil && e.Phase != state.PhaseStarted {
		a.log.Info("command already done; reporting its result again", "id", c.ID)
		return a.deliver(ctx, e)
	}
	e = &state.Entry{ID: c.ID, Type: c.Type, Mode: c.Mode, Phase: state.PhaseStarted, UpdatedAt: time.Now().UTC()}
	if err := a.store.Record(e); err != nil {
		// Acting without a journal could run the command twice or lose its result; the server
		// redelivers it, so wait for the disk instead.
		a.log.Error("cannot journal the command; not running it", "id", c.ID, "err", err)
		return nil
	}
	a.log.Info("running command", "id", c.ID, "type", c.Type, "mode", c.Mode, "reason", c.Reason)
	res, unenroll := a.execute(ctx, c)
	e.Phase, e.Result, e.Unenroll, e.UpdatedAt = state.PhaseDone, res, unenroll, time.Now().UTC()
	if err := a.store.Record(e); err != nil {
		a.log.Error("cannot journal the command result", "id", c.ID, "err", err)
	}
	a.emit(Event{Kind: "command-done", ID: c.ID})
	return a.deliver(ctx, e)
}

// execute acts on a command. unenroll says the agent must remove its key and state afterwards.
func (a *Agent) execute(ctx context.Context, c Command) (res *state.Result, unenroll bool) {
	res = &state.Result{Status: state.StatusFailed}
	defer func() { res.FinishedAt = time.Now().UTC() }()
	switch c.Type {
	case "lock":
		res.Status, res.Detail = a.lock(ctx)
	case "wipe":
		if c.Mode != "selective" {
			res.Detail = fmt.Sprintf("wipe mode %q is not supported by the agent: it removes managed data only (mode selective); "+
				"a full wipe needs the device's MDM enrollment or an OS reset", c.Mode)
			return res, false
		}
		paths := c.ManagedData
		if len(paths) == 0 {
			paths = a.policyManagedData() // the command may leave the list to the policy
		}
		targets, err := planWipe(paths, a.homes(), a.wipeRoots, a.store.Dir())
		if err != nil {
			res.Detail = err.Error()
			return res, false
		}
		done := wipeResult(doWipe(targets))
		res.Status, res.Detail, res.Removed, res.Paths = done.Status, done.Detail, done.Removed, done.Paths
		// Only a complete wipe ends the agent: after a partial one it keeps its identity, so a
		// new wipe can reach it, and the server keeps denying the device meanwhile.
		return res, res.Status == state.StatusDone
	default:
		res.Detail = fmt.Sprintf("command type %q is not supported by the agent (lock, wipe)", c.Type)
	}
	return res, false
}

// deliver posts a done command's result. A wipe's result is retried for a bounded window before
// the agent removes its key regardless: a wiped device must not keep its identity.
func (a *Agent) deliver(ctx context.Context, e *state.Entry) error {
	if e.Unenroll {
		deadline := time.Now().Add(a.wipeReportFor)
		for n := 1; ; n++ {
			err := a.postResult(ctx, e)
			if err == nil || ctx.Err() != nil || time.Now().After(deadline) {
				if err != nil {
					a.log.Error("could not deliver the wipe result; removing the key anyway", "id", e.ID, "err", err)
				}
				return errWipeDone
			}
			sleep(ctx, min(a.backoff(n), time.Until(deadline)))
		}
	}
	if err := a.postResult(ctx, e); err != nil {
		a.flushNeeded.Store(true)
		a.log.Warn("command result not delivered; will retry", "id", e.ID, "err", err)
	}
	return nil
}

// postResult posts the result and journals that the server acknowledged it.
func (a *Agent) postResult(ctx context.Context, e *state.Entry) error {
	var ack resultResponse
	path := "/agent/v1/commands/" + url.PathEscape(e.ID) + "/result"
	if err := a.client.do(ctx, a.requestTimeout, http.MethodPost, path, e.Result, &ack); err != nil {
		return err
	}
	if e.Unenroll {
		return nil // the journal is about to be removed with the rest of the state
	}
	e.Phase, e.UpdatedAt = state.PhaseReported, time.Now().UTC()
	if err := a.store.Record(e); err != nil {
		a.log.Warn("cannot journal the result delivery (it will be re-posted, harmlessly)", "id", e.ID, "err", err)
	}
	if err := a.store.Prune(); err != nil {
		a.log.Warn("cannot prune the command journal", "err", err)
	}
	return nil
}

// flushResults re-posts results that were done but not acknowledged (server down, restart).
func (a *Agent) flushResults(ctx context.Context) {
	if !a.flushNeeded.Swap(false) {
		return
	}
	entries, errs := a.store.Unreported()
	for _, err := range errs {
		a.log.Warn("skipping a corrupt command journal entry", "err", err)
	}
	for _, e := range entries {
		if e.Phase == state.PhaseDone && !e.Unenroll {
			if err := a.postResult(ctx, e); err != nil {
				a.flushNeeded.Store(true)
				return // server still unreachable; the next cycle tries again
			}
		}
	}
}

// resumeJournal finishes what a previous run left: a wipe that acted is delivered and then
// completed (errWipeDone), other unreported results are posted.
func (a *Agent) resumeJournal(ctx context.Context) error {
	entries, _ := a.store.Entries()
	for _, e := range entries {
		if e.Unenroll && e.Phase != state.PhaseStarted {
			a.log.Warn("resuming a selective wipe interrupted by a restart", "id", e.ID)
			return a.deliver(ctx, e)
		}
	}
	a.flushResults(ctx)
	return nil
}
