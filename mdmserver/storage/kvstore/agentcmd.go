package kvstore

import (
	"bytes"
	"context"
	"encoding/json"

	"github.com/halemdm/hale/mdmserver/agentcmd"
)

// BucketAgentCommands holds agentcmd.StoreKey ("<device id>\x00<command id>") → the JSON of
// agentcmd.Command, whose field names are the stored format (and the agent's wire format).
var BucketAgentCommands = []byte("agent_commands")

// agentCommandsBuckets are the buckets of the agent commands.
var agentCommandsBuckets = [][]byte{BucketAgentCommands}

// AgentCommands returns the agent commands of this transaction.
func (t *tx) AgentCommands() agentcmd.Repository { return agentCommandsRepo{t} }

// agentCommandsRepo is agentcmd.Repository on one key-value transaction.
type agentCommandsRepo struct{ t *tx }

func agentCommandKey(deviceID, id string) []byte { return agentcmd.StoreKey(deviceID, id) }

// Command returns one command of a device.
func (r agentCommandsRepo) Command(ctx context.Context, deviceID, id string) (*agentcmd.Command, error) {
	b, err := bucket(r.t.tx, BucketAgentCommands)
	if err != nil {
		return nil, err
	}
	v := b.Get(agentCommandKey(deviceID, id))
	if v == nil {
		return nil, agentcmd.ErrNotFound
	}
	cmd := new(agentcmd.Command)
	if err := json.Unmarshal(v, cmd); err != nil {
		return nil, err
	}
	return cmd, nil
}

// PutCommand stores c and moves the state counts from the state of the command it replaces.
func (r agentCommandsRepo) PutCommand(ctx context.Context, c *agentcmd.Command) error {
	v, err := json.Marshal(c)
	if err != nil {
		return err
	}
	b, err := bucket(r.t.tx, BucketAgentCommands)
	if err != nil {
		return err
	}
	k := agentCommandKey(c.DeviceID, c.ID)
	old := ""
	if prev := b.Get(k); prev != nil {
		old = StateOf(prev)
	}
	if err := b.Put(k, v); err != nil {
		return err
	}
	r.t.tx.MoveState(BucketAgentCommands, old, c.State)
	return nil
}

// Commands returns a device's commands in key (command ID) order.
func (r agentCommandsRepo) Commands(ctx context.Context, deviceID string) ([]agentcmd.Command, error) {
	b, err := bucket(r.t.tx, BucketAgentCommands)
	if err != nil {
		return nil, err
	}
	var out []agentcmd.Command
	prefix := []byte(deviceID + "\x00")
	c := b.Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		var cmd agentcmd.Command
		if err := json.Unmarshal(v, &cmd); err != nil {
			return nil, err
		}
		out = append(out, cmd)
	}
	return out, nil
}

// StateCounts returns the counts of commands per state the backend keeps (without reading the commands).
func (r agentCommandsRepo) StateCounts(ctx context.Context) (map[string]int64, error) {
	return r.t.tx.StateCounts(BucketAgentCommands)
}
