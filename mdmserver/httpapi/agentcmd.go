package httpapi

import (
	"github.com/halemdm/hale/api"
	"github.com/halemdm/hale/mdmserver/agentcmd"
)

// AgentCommand is the wire form of an agent's command, with its result once reported: the agent
// API hands it to the agent, the admin API shows it to operators, in the same shape.
func AgentCommand(c *agentcmd.Command) api.AgentCommand {
	out := api.AgentCommand{
		ID: c.ID, DeviceID: c.DeviceID, Type: c.Type, Mode: c.Mode, Reason: c.Reason,
		IssuedAt: c.IssuedAt, IssuedBy: c.IssuedBy, ManagedData: c.ManagedData,
		State: c.State, DeliveredAt: c.DeliveredAt, FinishedAt: c.FinishedAt,
	}
	if r := c.Result; r != nil {
		out.Result = &api.AgentCommandResult{Status: r.Status, Detail: r.Detail, Removed: r.Removed, FinishedAt: r.FinishedAt}
		if r.Paths != nil {
			out.Result.Paths = make([]api.PathResult, len(r.Paths))
			for i, p := range r.Paths {
				out.Result.Paths[i] = api.PathResult(p)
			}
		}
	}
	return out
}

// AgentCommands is the wire form of a list of an agent's commands; an empty list is [], not
// null.
func AgentCommands(cmds []agentcmd.Command) api.AgentCommands {
	out := api.AgentCommands{Commands: make([]api.AgentCommand, len(cmds))}
	for i := range cmds {
		out.Commands[i] = AgentCommand(&cmds[i])
	}
	return out
}
