// Package problem writes and reads RFC 9457 "problem details" errors (application/problem+json),
// the one error shape every Hale HTTP endpoint answers with.
package problem

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// ContentType is the media type of a problem document.
const ContentType = "application/problem+json"

// TypeBase prefixes the type URI of every Hale problem; the suffix is a stable code a client
// can switch on ("https://hale.dev/problems/invalid-request").
const TypeBase = "https://hale.dev/problems/"

// Details is an RFC 9457 problem document. Code is Hale's extension member: the same stable code
// as the end of Type, easier to match on.
type Details struct {
	Type     string `json:"type"`
	Title    string `json:"title"`
	Status   int    `json:"status"`
	Detail   string `json:"detail,omitempty"`
	Instance string `json:"instance,omitempty"`
	Code     string `json:"code"`
	// RequestID lets an operator find the request in the server's logs and audit trail.
	RequestID string `json:"request_id,omitempty"`
	// Errors lists field-level problems, for example every validation error of a policy.
	Errors []FieldError `json:"errors,omitempty"`
	// Reasons are the stable reason codes of an access denial ([{code, detail}]), so a caller
	// handles a 403 from the access API like a decision.
	Reasons any `json:"reasons,omitempty"`
	// GraceUntil and Remediation accompany Reasons: the deadline, and what the device's user
	// reads for each reason ([]remediation.Item).
	GraceUntil  *time.Time `json:"grace_until,omitempty"`
	Remediation any        `json:"remediation,omitempty"`
}

// FieldError is one problem with one field of a request.
type FieldError struct {
	Field   string `json:"field"`
	Line    int    `json:"line,omitempty"`
	Message string `json:"message"`
}

// Error makes *Details usable as an error, for clients that decode one.
func (d *Details) Error() string {
	if d.Detail != "" {
		return fmt.Sprintf("%s (%d %s)", d.Detail, d.Status, d.Code)
	}
	return fmt.Sprintf("%s (%d %s)", d.Title, d.Status, d.Code)
}

// New returns a problem with status, a stable code and a detail a person can act on.
func New(status int, code, detail string) *Details {
	return &Details{
		Type:   TypeBase + code,
		Title:  http.StatusText(status),
		Status: status,
		Code:   code,
		Detail: detail,
	}
}

// RequestIDHeader carries the request ID on requests and responses.
const RequestIDHeader = "X-Request-Id"

// Write sends p as the response to r.
func Write(w http.ResponseWriter, r *http.Request, p *Details) {
	if p.Instance == "" && r != nil {
		p.Instance = r.URL.Path
	}
	if p.RequestID == "" {
		p.RequestID = w.Header().Get(RequestIDHeader)
	}
	h := w.Header()
	h.Set("Content-Type", ContentType)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Del("Content-Length")
	w.WriteHeader(p.Status)
	_ = json.NewEncoder(w).Encode(p)
}

// Error writes a problem with status, code and detail.
func Error(w http.ResponseWriter, r *http.Request, status int, code, detail string) {
	Write(w, r, New(status, code, detail))
}

// Common problems, named so call sites read as what happened.

// BadRequest answers 400 invalid-request.
func BadRequest(w http.ResponseWriter, r *http.Request, detail string) {
	Error(w, r, http.StatusBadRequest, "invalid-request", detail)
}

// NotFound answers 404 not-found.
func NotFound(w http.ResponseWriter, r *http.Request, detail string) {
	Error(w, r, http.StatusNotFound, "not-found", detail)
}

// Internal answers 500 internal-error without leaking err to the client; the caller logs err.
func Internal(w http.ResponseWriter, r *http.Request) {
	Error(w, r, http.StatusInternalServerError, "internal-error",
		"the server failed to handle the request; the request ID finds it in the server log")
}

// DecodeJSON reads one JSON value from r's body into v: at most limit bytes, unknown fields and
// trailing data refused, the content type checked when given. On failure it has already written
// the problem and returns false.
func DecodeJSON(w http.ResponseWriter, r *http.Request, limit int64, v any) bool {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		Error(w, r, http.StatusUnsupportedMediaType, "unsupported-media-type", "send the body as application/json")
		return false
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, limit))
	dec.DisallowUnknownFields()
	tooBig := func(err error) bool {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			Error(w, r, http.StatusRequestEntityTooLarge, "body-too-large", fmt.Sprintf("the body is larger than %d bytes", limit))
			return true
		}
		return false
	}
	if err := dec.Decode(v); err != nil {
		if !tooBig(err) {
			BadRequest(w, r, "malformed JSON body: "+err.Error())
		}
		return false
	}
	if _, err := dec.Token(); err != io.EOF {
		if !tooBig(err) {
			BadRequest(w, r, "malformed JSON body: trailing data after the JSON value")
		}
		return false
	}
	return true
}

// Read decodes a problem from a response whose status is not 2xx; a body that is not a problem
// document becomes a problem with the status and a snippet of the body.
func Read(resp *http.Response) *Details {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	p := &Details{}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), ContentType) && json.Unmarshal(body, p) == nil && p.Status != 0 {
		return p
	}
	p = New(resp.StatusCode, "http-error", strings.TrimSpace(string(body)))
	if len(p.Detail) > 200 {
		p.Detail = p.Detail[:200] + "…"
	}
	return p
}
