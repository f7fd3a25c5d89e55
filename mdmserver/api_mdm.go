package mdmserver

import (
	"context"
	"errors"
	"io"
	"net/http"
	"regexp"
	"time"

	"github.com/halemdm/hale/internal/httpjson"
	"github.com/halemdm/hale/internal/problem"
	"github.com/halemdm/hale/mdmserver/agentcmd"
	"github.com/halemdm/hale/mdmserver/commands"
	"github.com/halemdm/hale/mdmserver/httpapi"
	"github.com/halemdm/hale/mdmserver/inventory"
	"github.com/halemdm/hale/mdmserver/pushcert"
	"github.com/halemdm/hale/mdmserver/storage"
)

// pushCertsStore narrows the server's store to what the push certificates use.
func pushCertsStore(st storage.Store) pushcert.Store {
	return storage.Scope(st, func(tx storage.Tx) pushcert.Tx { return tx })
}

// commandsStore narrows the server's store to what the Apple MDM commands use.
func commandsStore(st storage.Store) commands.Store {
	return storage.Scope(st, func(tx storage.Tx) commands.Tx { return tx })
}

// resultStore narrows the server's store to what storing an Apple MDM result uses: the commands,
// and what its audit entry needs.
func resultStore(st storage.Store) commands.ResultStore {
	return storage.Scope(st, func(tx storage.Tx) commands.ResultTx { return tx })
}

// PUT /api/v1/pushcert: a PEM certificate followed by its PEM private key.
func (s *Server) putPushCert(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 64<<10))
	if err != nil {
		problem.Error(w, r, http.StatusRequestEntityTooLarge, "body-too-large", "a push certificate and key fit in 64 KiB")
		return
	}
	info, err := s.pushCerts.Upload(r.Context(), body, body)
	if err != nil {
		problem.BadRequest(w, r, "send the APNs push certificate PEM followed by its private key PEM: "+err.Error())
		return
	}
	s.record(r, event{Action: "pushcert.upload", Target: info.Topic, Details: map[string]string{"not_after": info.NotAfter.Format(time.RFC3339)}})
	httpjson.Write(w, http.StatusOK, info)
}

// GET /api/v1/pushcert
func (s *Server) listPushCerts(w http.ResponseWriter, r *http.Request) {
	infos, err := s.pushCerts.List(r.Context())
	if err != nil {
		s.internal(w, r, err)
		return
	}
	if infos == nil {
		infos = []pushcert.Info{}
	}
	httpjson.Write(w, http.StatusOK, map[string]any{"push_certificates": infos})
}

// queryCommands are the read-only commands IT may send to refresh what Hale knows of a device.
// Lock, lost mode and wipe have their own endpoints with their own roles and audit.
var queryCommands = map[string]bool{
	"SecurityInfo": true, "DeviceInformation": true, "ProfileList": true,
	"CertificateList": true, "InstalledApplicationList": true,
}

// deviceInfoQueries is what a DeviceInformation command asks when the caller names no queries.
var deviceInfoQueries = []string{"UDID", "SerialNumber", "DeviceName", "Model", "ModelName", "ProductName",
	"OSVersion", "BuildVersion", "IsSupervised"}

var validQuery = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_.]{0,63}$`)

// POST /api/v1/devices/{id}/commands: {"request_type": "SecurityInfo"} (and "queries" for
// DeviceInformation) → 202 with the command record.
func (s *Server) postCommand(w http.ResponseWriter, r *http.Request) {
	var req struct {
		RequestType string   `json:"request_type"`
		Queries     []string `json:"queries,omitempty"`
	}
	if !problem.DecodeJSON(w, r, s.cfg.MaxBodyBytes, &req) {
		return
	}
	if !queryCommands[req.RequestType] {
		problem.BadRequest(w, r, "request_type must be one of SecurityInfo, DeviceInformation, ProfileList, CertificateList, InstalledApplicationList")
		return
	}
	cmd := commands.Command{RequestType: req.RequestType}
	if req.RequestType == "DeviceInformation" {
		q := req.Queries
		if len(q) == 0 {
			q = deviceInfoQueries
		}
		if len(q) > 64 {
			problem.BadRequest(w, r, "at most 64 queries")
			return
		}
		for _, name := range q {
			if !validQuery.MatchString(name) {
				problem.BadRequest(w, r, "invalid query name "+name)
				return
			}
		}
		cmd.Fields = map[string]any{"Queries": q}
	} else if len(req.Queries) > 0 {
		problem.BadRequest(w, r, "queries applies to DeviceInformation only")
		return
	}
	d, ok := s.appleDeviceFor(w, r)
	if !ok {
		return
	}
	rec, err := s.dispatch.Send(r.Context(), d.EnrollmentID, cmd, actor(r))
	if err != nil {
		s.internal(w, r, err)
		return
	}
	s.record(r, event{Action: "device.command", Target: d.ID, Details: map[string]string{"request_type": cmd.RequestType, "command_id": rec.UUID}})
	httpjson.Write(w, http.StatusAccepted, rec)
}

// GET /api/v1/devices/{id}/commands: MDM command records for Apple devices, agent commands
// (with their results) for agents.
func (s *Server) listCommands(w http.ResponseWriter, r *http.Request) {
	d, ok := s.deviceFor(w, r)
	if !ok {
		return
	}
	if d.Platform == inventory.PlatformAgent {
		cmds, err := s.agentQueue.List(r.Context(), d.ID)
		if err != nil {
			s.internal(w, r, err)
			return
		}
		if cmds == nil {
			cmds = []agentcmd.Command{}
		}
		httpjson.Write(w, http.StatusOK, map[string]any{"commands": cmds})
		return
	}
	if d.EnrollmentID == "" {
		httpjson.Write(w, http.StatusOK, map[string]any{"commands": []*commands.Record{}})
		return
	}
	recs, err := s.commands.List(r.Context(), d.EnrollmentID)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	if recs == nil {
		recs = []*commands.Record{}
	}
	httpjson.Write(w, http.StatusOK, map[string]any{"commands": recs})
}

// GET /api/v1/devices/{id}/commands/{uuid}: the record and, once answered, the parsed result
// (Apple devices), or the agent command with its result (agents).
func (s *Server) getCommand(w http.ResponseWriter, r *http.Request) {
	d, ok := s.deviceFor(w, r)
	if !ok {
		return
	}
	if d.Platform == inventory.PlatformAgent {
		cmd, err := s.agentQueue.Get(r.Context(), d.ID, r.PathValue("uuid"))
		switch {
		case errors.Is(err, agentcmd.ErrNotFound):
			problem.NotFound(w, r, "no command "+r.PathValue("uuid")+" for device "+d.ID)
		case err != nil:
			s.internal(w, r, err)
		default:
			httpjson.Write(w, http.StatusOK, cmd)
		}
		return
	}
	if d.EnrollmentID == "" {
		problem.NotFound(w, r, "device "+d.ID+" has not checked in; it has no commands")
		return
	}
	id, uuid := d.EnrollmentID, r.PathValue("uuid")
	rec, err := s.commands.Get(r.Context(), id, uuid)
	if errors.Is(err, commands.ErrNotFound) {
		problem.NotFound(w, r, "no command "+uuid+" for device "+id)
		return
	} else if err != nil {
		s.internal(w, r, err)
		return
	}
	out := struct {
		*commands.Record
		Result *commands.Result `json:"result,omitempty"`
	}{Record: rec}
	if res, err := s.commands.Result(r.Context(), id, uuid); err == nil {
		out.Result = res
	} else if !errors.Is(err, commands.ErrNotFound) {
		s.internal(w, r, err)
		return
	}
	httpjson.Write(w, http.StatusOK, out)
}

// appleDeviceFor resolves a route's {id} to an Apple device that checked in (it has a nanomdm
// enrollment), answering the error itself.
func (s *Server) appleDeviceFor(w http.ResponseWriter, r *http.Request) (*inventory.Device, bool) {
	d, ok := s.deviceFor(w, r)
	if !ok {
		return nil, false
	}
	if d.Platform != inventory.PlatformApple || d.EnrollmentID == "" {
		problem.Error(w, r, http.StatusConflict, "not-an-mdm-device", "device "+d.ID+" is not an Apple device that has checked in")
		return nil, false
	}
	return d, true
}

func actor(r *http.Request) string { return httpapi.Actor(r) }

// internal logs err and answers a generic 500 (httpapi.Internal).
func (s *Server) internal(w http.ResponseWriter, r *http.Request, err error) {
	httpapi.Internal(s.log, w, r, err)
}

// expireCommands expires MDM commands unanswered for longer than command_ttl, every interval,
// until ctx is done. Security commands never expire.
func (s *Server) expireCommands(ctx context.Context, every time.Duration) {
	for {
		n, err := s.dispatch.Expire(ctx, s.cfg.CommandTTL, func(requestType string) bool { return securityCommands[requestType] })
		if err != nil && ctx.Err() == nil {
			s.log.ErrorContext(ctx, "expiring commands failed", "err", err)
		} else if n > 0 {
			s.log.InfoContext(ctx, "commands expired", "count", n, "ttl", s.cfg.CommandTTL)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(every):
		}
	}
}
