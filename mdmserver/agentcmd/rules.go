package agentcmd

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"
)

// The rules over a Repository, in the repository's unit of work: a caller commits what they
// write together with its own writes (a result's audit entry), and Queue runs each alone.

// Enqueue stores c for its device, at now. IssuedAt and State are filled in, and ID when it is
// empty; a command already stored under the ID is ErrInvalid.
func Enqueue(ctx context.Context, r Repository, c Command, now time.Time) (*Command, error) {
	if c.DeviceID == "" || (c.Type != TypeLock && c.Type != TypeWipe && c.Type != TypeLostMode) {
		return nil, fmt.Errorf("%w: device and a type of lock or wipe are required", ErrInvalid)
	}
	if c.ID == "" {
		c.ID = NewID()
	}
	c.IssuedAt, c.State = now.UTC(), StateQueued
	switch _, err := r.Command(ctx, c.DeviceID, c.ID); {
	case err == nil:
		return nil, fmt.Errorf("%w: command %s exists", ErrInvalid, c.ID)
	case !errors.Is(err, ErrNotFound):
		return nil, err
	}
	if err := r.PutCommand(ctx, &c); err != nil {
		return nil, err
	}
	return &c, nil
}

// List returns every command of a device, oldest first.
func List(ctx context.Context, r Repository, deviceID string) ([]Command, error) {
	cmds, err := r.Commands(ctx, deviceID)
	slices.SortStableFunc(cmds, func(a, b Command) int { return a.IssuedAt.Compare(b.IssuedAt) })
	return cmds, err
}

// Deliver returns the device's unfinished commands, oldest first, and marks those still queued
// delivered at now.
func Deliver(ctx context.Context, r Repository, deviceID string, now time.Time) ([]Command, error) {
	all, err := r.Commands(ctx, deviceID)
	if err != nil {
		return nil, err
	}
	var out []Command
	for _, cmd := range all {
		if cmd.State != StateQueued && cmd.State != StateDelivered {
			continue
		}
		if cmd.State == StateQueued {
			cmd.State, cmd.DeliveredAt = StateDelivered, now.UTC()
			if err := r.PutCommand(ctx, &cmd); err != nil {
				return nil, err
			}
		}
		out = append(out, cmd)
	}
	slices.SortStableFunc(out, func(a, b Command) int { return a.IssuedAt.Compare(b.IssuedAt) })
	return out, nil
}

// Complete records the agent's result res for command id of deviceID, at now. Reporting the
// same command again is accepted and changes nothing (the agent may resend after a lost
// response); first is false then. The command's state follows the result: acknowledged when
// done, partial, or error when failed.
func Complete(ctx context.Context, r Repository, deviceID, id string, res Result, now time.Time) (cmd *Command, first bool, err error) {
	cmd, err = r.Command(ctx, deviceID, id)
	if err != nil {
		return nil, false, err
	}
	if cmd.Finished() {
		return cmd, false, nil
	}
	if err := res.check(cmd.Type); err != nil {
		return nil, false, err
	}
	cmd.State, cmd.FinishedAt, cmd.Result = stateOf[res.Status], now.UTC(), &res
	if err := r.PutCommand(ctx, cmd); err != nil {
		return nil, false, err
	}
	return cmd, true, nil
}
