package adminapi

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"regexp"

	"github.com/micromdm/nanomdm/mdm"

	"github.com/halemdm/hale/api"
	"github.com/halemdm/hale/internal/httpjson"
	"github.com/halemdm/hale/internal/problem"
	"github.com/halemdm/hale/mdmserver/agentcmd"
	"github.com/halemdm/hale/mdmserver/applemdm"
	"github.com/halemdm/hale/mdmserver/commands"
	"github.com/halemdm/hale/mdmserver/httpapi"
	"github.com/halemdm/hale/mdmserver/inventory"
)

// AppleCommands reads the MDM commands sent to Apple devices and their results
// (commands.Service).
type AppleCommands interface {
	List(ctx context.Context, enrollmentID string) ([]*commands.Record, error)
	Get(ctx context.Context, enrollmentID, uuid string) (*commands.Record, error)
	Result(ctx context.Context, enrollmentID, uuid string) (*commands.Result, error)
}

// CommandSender queues an MDM command for an Apple device and pushes it (commands.Dispatcher).
type CommandSender interface {
	Send(ctx context.Context, enrollmentID string, cmd commands.Command, requestedBy string) (*commands.Record, error)
}

// AgentCommands reads the commands queued for agents (agentcmd.Queue).
type AgentCommands interface {
	List(ctx context.Context, deviceID string) ([]agentcmd.Command, error)
	Get(ctx context.Context, deviceID, id string) (*agentcmd.Command, error)
}

// Commands serves /api/v1/devices/{id}/commands: read-only MDM queries sent to Apple devices,
// and the commands of any device with their states and results. The routes name a device of
// either kind and show its own kind of command: MDM commands for an Apple device, agent
// commands for an agent.
type Commands struct {
	// Devices resolves the route's {id}.
	Devices httpapi.DeviceLookup
	// Apple reads Apple devices' commands; Send queues new ones.
	Apple AppleCommands
	Send  CommandSender
	// Agent reads agents' commands.
	Agent AgentCommands
	// Auditor records the queries sent.
	Auditor httpapi.Auditor
	// Log receives internal errors.
	Log *slog.Logger
	// MaxBodyBytes bounds a request's body.
	MaxBodyBytes int64
}

// queryCommands are the read-only commands IT may send to refresh what Hale knows of a device.
// Lock, lost mode and wipe have their own endpoints with their own roles and audit.
var queryCommands = map[string]bool{
	"SecurityInfo": true, "DeviceInformation": true, "ProfileList": true, "Restrictions": true,
	"CertificateList": true, "InstalledApplicationList": true,
}

// maxQueries bounds a DeviceInformation's queries.
const maxQueries = 64

var validQuery = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_.]{0,63}$`)

// Post is POST /api/v1/devices/{id}/commands: {"request_type": "SecurityInfo"} (and "queries"
// for DeviceInformation) → 202 with the command record.
func (h *Commands) Post(w http.ResponseWriter, r *http.Request) {
	var req api.CommandRequest
	if !problem.DecodeJSON(w, r, h.MaxBodyBytes, &req) {
		return
	}
	if !queryCommands[req.RequestType] {
		problem.BadRequest(w, r, "request_type must be one of SecurityInfo, DeviceInformation, ProfileList, Restrictions, CertificateList, InstalledApplicationList")
		return
	}
	cmd := commands.Command{RequestType: req.RequestType}
	if req.RequestType == "DeviceInformation" {
		if len(req.Queries) > maxQueries {
			problem.BadRequest(w, r, "at most 64 queries")
			return
		}
		for _, name := range req.Queries {
			if !validQuery.MatchString(name) {
				problem.BadRequest(w, r, "invalid query name "+name)
				return
			}
		}
		cmd = applemdm.DeviceInformation(req.Queries)
	} else if len(req.Queries) > 0 {
		problem.BadRequest(w, r, "queries applies to DeviceInformation only")
		return
	}
	d, ok := h.appleDevice(w, r)
	if !ok {
		return
	}
	rec, err := h.Send.Send(r.Context(), d.EnrollmentID, cmd, httpapi.Actor(r))
	if err != nil {
		httpapi.Internal(h.Log, w, r, err)
		return
	}
	_ = h.Auditor.Record(r, httpapi.Event{Action: "device.command", Target: d.ID,
		Details: map[string]string{"request_type": cmd.RequestType, "command_id": rec.UUID}})
	httpjson.Write(w, http.StatusAccepted, appleCommand(rec))
}

// List is GET /api/v1/devices/{id}/commands: MDM command records for an Apple device, agent
// commands (with their results) for an agent.
func (h *Commands) List(w http.ResponseWriter, r *http.Request) {
	d, ok := httpapi.DeviceFor(h.Devices, h.Log, w, r)
	if !ok {
		return
	}
	if d.Platform == inventory.PlatformAgent || d.Platform == inventory.PlatformAndroid {
		cmds, err := h.Agent.List(r.Context(), d.ID)
		if err != nil {
			httpapi.Internal(h.Log, w, r, err)
			return
		}
		httpjson.Write(w, http.StatusOK, httpapi.AgentCommands(cmds))
		return
	}
	var recs []*commands.Record
	if d.EnrollmentID != "" { // a device that never checked in has no commands
		var err error
		if recs, err = h.Apple.List(r.Context(), d.EnrollmentID); err != nil {
			httpapi.Internal(h.Log, w, r, err)
			return
		}
	}
	out := api.AppleCommands{Commands: make([]api.AppleCommand, len(recs))}
	for i, rec := range recs {
		out.Commands[i] = appleCommand(rec)
	}
	httpjson.Write(w, http.StatusOK, out)
}

// Get is GET /api/v1/devices/{id}/commands/{uuid}: the record and, once answered, the parsed
// result (Apple devices), or the agent command with its result (agents).
func (h *Commands) Get(w http.ResponseWriter, r *http.Request) {
	d, ok := httpapi.DeviceFor(h.Devices, h.Log, w, r)
	if !ok {
		return
	}
	if d.Platform == inventory.PlatformAgent || d.Platform == inventory.PlatformAndroid {
		cmd, err := h.Agent.Get(r.Context(), d.ID, r.PathValue("uuid"))
		switch {
		case errors.Is(err, agentcmd.ErrNotFound):
			problem.NotFound(w, r, "no command "+r.PathValue("uuid")+" for device "+d.ID)
		case err != nil:
			httpapi.Internal(h.Log, w, r, err)
		default:
			httpjson.Write(w, http.StatusOK, httpapi.AgentCommand(cmd))
		}
		return
	}
	if d.EnrollmentID == "" {
		problem.NotFound(w, r, "device "+d.ID+" has not checked in; it has no commands")
		return
	}
	id, uuid := d.EnrollmentID, r.PathValue("uuid")
	rec, err := h.Apple.Get(r.Context(), id, uuid)
	if errors.Is(err, commands.ErrNotFound) {
		problem.NotFound(w, r, "no command "+uuid+" for device "+id)
		return
	} else if err != nil {
		httpapi.Internal(h.Log, w, r, err)
		return
	}
	out := api.AppleCommandWithResult{AppleCommand: appleCommand(rec)}
	if res, err := h.Apple.Result(r.Context(), id, uuid); err == nil {
		out.Result = appleResult(res)
	} else if !errors.Is(err, commands.ErrNotFound) {
		httpapi.Internal(h.Log, w, r, err)
		return
	}
	httpjson.Write(w, http.StatusOK, out)
}

// appleDevice resolves a route's {id} to an Apple device that checked in (it has a nanomdm
// enrollment), answering the error itself.
func (h *Commands) appleDevice(w http.ResponseWriter, r *http.Request) (*inventory.Device, bool) {
	d, ok := httpapi.DeviceFor(h.Devices, h.Log, w, r)
	if !ok {
		return nil, false
	}
	if d.Platform != inventory.PlatformApple || d.EnrollmentID == "" {
		problem.Error(w, r, http.StatusConflict, "not-an-mdm-device", "device "+d.ID+" is not an Apple device that has checked in")
		return nil, false
	}
	return d, true
}

// appleCommand is the wire form of an Apple command's record.
func appleCommand(rec *commands.Record) api.AppleCommand {
	return api.AppleCommand{
		CommandID: rec.UUID, EnrollmentID: rec.EnrollmentID, RequestType: rec.RequestType, State: string(rec.State),
		RequestedBy: rec.RequestedBy, CreatedAt: rec.CreatedAt, UpdatedAt: rec.UpdatedAt, PushedAt: rec.PushedAt,
		AnsweredAt: rec.AnsweredAt, PushError: rec.PushError, ErrorChain: errorChain(rec.ErrorChain), Detail: rec.Detail,
	}
}

// appleResult is the wire form of an Apple device's answer.
func appleResult(res *commands.Result) *api.AppleCommandResult {
	out := &api.AppleCommandResult{
		EnrollmentID: res.EnrollmentID, CommandID: res.CommandUUID, RequestType: res.RequestType, Status: res.Status,
		ReceivedAt: res.ReceivedAt, ErrorChain: errorChain(res.ErrorChain),
	}
	if si := res.SecurityInfo; si != nil {
		out.SecurityInfo = &api.SecurityInfo{
			HardwareEncryptionCaps: si.HardwareEncryptionCaps, PasscodePresent: si.PasscodePresent,
			PasscodeCompliant: si.PasscodeCompliant, PasscodeCompliantWithProfiles: si.PasscodeCompliantWithProfiles,
			FDEEnabled: si.FDEEnabled, SIPEnabled: si.SystemIntegrityProtectionEnabled,
		}
		if fw := si.FirewallSettings; fw != nil {
			out.SecurityInfo.Firewall = &api.FirewallSettings{FirewallEnabled: fw.FirewallEnabled}
		}
	}
	if di := res.DeviceInformation; di != nil {
		info := api.DeviceInformation(*di)
		out.DeviceInformation = &info
	}
	out.Restrictions = res.Restrictions
	if res.ProfileList != nil {
		out.ProfileList = make([]api.InstalledProfile, len(res.ProfileList))
		for i, p := range res.ProfileList {
			out.ProfileList[i] = api.InstalledProfile(p)
		}
	}
	return out
}

// errorChain is the wire form of an Apple ErrorChain.
func errorChain(chain []mdm.ErrorChain) []api.ErrorChain {
	if chain == nil {
		return nil
	}
	out := make([]api.ErrorChain, len(chain))
	for i, e := range chain {
		out[i] = api.ErrorChain(e)
	}
	return out
}
