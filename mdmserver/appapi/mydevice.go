package appapi

import (
	"net/http"

	"github.com/halemdm/hale/api"
	"github.com/halemdm/hale/internal/httpjson"
	"github.com/halemdm/hale/internal/problem"
	"github.com/halemdm/hale/mdmserver/httpapi"
)

// MyDeviceLink answers POST /app/v1/my-device-link: after a fresh signed report (the body is a
// report, verified and recorded as POST /app/v1/report does), a link to the page of the
// instance's device, which the app opens in the browser for its user (what to fix, check
// again, emergency access). A device that may not open sessions still gets it: that is when
// its user needs it.
func (h *Handler) MyDeviceLink(w http.ResponseWriter, r *http.Request) {
	if h.Links == nil {
		problem.NotFound(w, r, "the my-device page is not served")
		return
	}
	var req api.AppReportRequest
	if !problem.DecodeJSON(w, r, maxBody, &req) {
		return
	}
	e := httpapi.Entry(r, httpapi.Event{})
	e.Actor, e.Role = "app:"+req.InstanceID, "app"
	in, err := h.Service.Report(r.Context(), req, e)
	if err != nil {
		h.refused(w, r, err)
		return
	}
	httpjson.Write(w, http.StatusOK, h.Links(in.DeviceID))
}
