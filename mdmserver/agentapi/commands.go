package agentapi

import (
	"errors"
	"net/http"
	"time"

	"github.com/halemdm/hale/api"
	"github.com/halemdm/hale/internal/httpjson"
	"github.com/halemdm/hale/internal/problem"
	"github.com/halemdm/hale/mdmserver/agentcmd"
	"github.com/halemdm/hale/mdmserver/httpapi"
)

// maxLongPoll caps GET /agent/v1/commands?wait=, below the server's write timeout.
const maxLongPoll = 55 * time.Second

// maxAgentResult bounds a command result's body: a wipe lists up to agentcmd.MaxResultPaths
// paths with their outcomes.
const maxAgentResult = 1 << 20

// Commands answers GET /agent/v1/commands?wait=30s (device): the device's unfinished commands
// (api.AgentCommands), waiting up to wait for one to arrive, so a wipe reaches an agent within
// a round trip of being ordered.
func (h *Handler) Commands(w http.ResponseWriter, r *http.Request) {
	d := httpapi.DeviceFrom(r.Context())
	var wait time.Duration
	if v := r.URL.Query().Get("wait"); v != "" {
		var err error
		if wait, err = time.ParseDuration(v); err != nil || wait < 0 {
			problem.BadRequest(w, r, "wait must be a duration such as 30s")
			return
		}
		wait = min(wait, maxLongPoll)
	}
	cmds, err := h.Queue.Wait(r.Context(), d.ID, wait)
	if err != nil {
		h.internal(w, r, err)
		return
	}
	httpjson.Write(w, http.StatusOK, httpapi.AgentCommands(cmds))
}

// CommandResult answers POST /agent/v1/commands/{id}/result (device): the agent's
// api.AgentCommandResult, recorded by the Results service. A selective wipe that removed every
// managed path makes the device wiped and revokes its certificates: the agent deleted its key,
// and nothing should be able to use a copy. A wipe that left any path behind (partial) or
// failed leaves the device denied as wipe_incomplete, with its identity, so that a new wipe can
// reach it.
func (h *Handler) CommandResult(w http.ResponseWriter, r *http.Request) {
	d := httpapi.DeviceFrom(r.Context())
	var res api.AgentCommandResult
	if !problem.DecodeJSON(w, r, maxAgentResult, &res) {
		return
	}
	actor := httpapi.Entry(r, httpapi.Event{}) // who reports: the service names the action
	err := h.Results.AgentResult(r.Context(), actor, d, r.PathValue("id"), agentResult(res))
	switch {
	case errors.Is(err, agentcmd.ErrNotFound):
		problem.NotFound(w, r, "no command "+r.PathValue("id")+" for this device")
		return
	case errors.Is(err, agentcmd.ErrInvalid):
		problem.BadRequest(w, r, err.Error())
		return
	case err != nil:
		h.internal(w, r, err)
		return
	}
	httpjson.Write(w, http.StatusOK, api.AgentResultAnswer{OK: true})
}

// agentResult is the domain form of an agent's result.
func agentResult(res api.AgentCommandResult) agentcmd.Result {
	out := agentcmd.Result{Status: res.Status, Detail: res.Detail, Removed: res.Removed, FinishedAt: res.FinishedAt}
	if res.Paths != nil {
		out.Paths = make([]agentcmd.PathResult, len(res.Paths))
		for i, p := range res.Paths {
			out.Paths[i] = agentcmd.PathResult(p)
		}
	}
	return out
}
