// Package fakeamapi is a fake of Google's Android Management API that the official client
// (google.golang.org/api/androidmanagement/v1, pointed at it with option.WithEndpoint and
// option.WithoutAuthentication) talks to, with simulated Android phones that enroll with its
// enrollment tokens, apply their policy and report their status, and a Pub/Sub push sender
// that signs its pushes the way Google does (an OIDC ID token from a key served as a JWKS).
//
// Every request body, and every enum value in it, is checked against the API's discovery
// document shipped in the google.golang.org/api module (internal/amapischema); a request that
// does not conform is answered 400 and recorded, so a test fails on a misspelled field.
package fakeamapi

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/halemdm/hale/internal/amapischema"
)

// Server is a fake Android Management API. Its methods are safe for concurrent use.
type Server struct {
	*httptest.Server
	doc *amapischema.Document

	mu          sync.Mutex
	enterprises map[string]map[string]any // name → Enterprise
	policies    map[string]map[string]any // name → Policy
	tokens      map[string]map[string]any // token value → EnrollmentToken
	devices     map[string]*Device        // name → device
	operations  map[string]map[string]any // name → Operation
	violations  []string
	requests    []string
	nextID      int
	// accounts are the service accounts whose tokens are required (RequireServiceAccount);
	// issued the access tokens handed out.
	accounts map[string]*rsa.PublicKey
	issued   map[string]bool
	signups  map[string]*signup
	// slowCommands leaves issued commands running until FinishCommands.
	slowCommands bool
}

// SlowCommands makes issued commands run until FinishCommands, as a phone that is off does.
func (s *Server) SlowCommands(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.slowCommands = on
}

// FinishCommands finishes every running command and returns each operation's JSON, as the
// COMMAND notification carries it.
func (s *Server) FinishCommands() [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out [][]byte
	for _, op := range s.operations {
		if op["done"] == false {
			op["done"] = true
			b, _ := json.Marshal(op)
			out = append(out, b)
		}
	}
	return out
}

// signup is a signup URL handed out, and the enterprise token its completion gave.
type signup struct {
	project, callback, token string
	used                     bool
}

// CompleteSignup is the organisation's administrator finishing the signup page of signup URL
// name: it returns the callback URL Google sends the browser to, with its enterpriseToken.
func (s *Server) CompleteSignup(name string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	su := s.signups[name]
	if su == nil {
		return "", fmt.Errorf("fakeamapi: no signup URL %s", name)
	}
	su.token = "EAH" + hex.EncodeToString(randBytes(12))
	return su.callback + "?enterpriseToken=" + su.token, nil
}

// Device is a simulated Android phone. Its exported fields are its facts; change them under
// Server.Update.
type Device struct {
	// Name is enterprises/E/devices/D.
	Name string
	// AndroidVersion, SecurityPatch, Encrypted, Secure (a lock is set) and Rooted are what the
	// phone reports (Rooted turns its Play Integrity posture POTENTIALLY_COMPROMISED).
	AndroidVersion string
	SecurityPatch  string
	Encrypted      bool
	Secure         bool
	Rooted         bool
	// Refuses lists the policy settings the phone does not apply (reported as
	// nonComplianceDetails).
	Refuses []string
	// OldDevicePolicy is an Android Device Policy too old for the WIPE command: AMAPI refuses
	// it (400, API_LEVEL), and only devices.delete wipes the phone.
	OldDevicePolicy bool

	policyName     string
	policyVersion  string
	tokenData      string
	tokenName      string
	personal       bool
	state          string
	enrolled       time.Time
	Commands       []map[string]any // every command issued, as received
	Deleted        bool
	WipeDataFlags  []string
	LastStatusTime time.Time
}

// New starts a fake with one enterprise, enterpriseName ("enterprises/LC0123").
func New(enterpriseName string) (*Server, error) {
	doc, err := amapischema.Load()
	if err != nil {
		return nil, err
	}
	s := &Server{doc: doc, enterprises: map[string]map[string]any{}, policies: map[string]map[string]any{},
		tokens: map[string]map[string]any{}, devices: map[string]*Device{}, operations: map[string]map[string]any{},
		signups: map[string]*signup{}}
	s.enterprises[enterpriseName] = map[string]any{"name": enterpriseName, "enterpriseDisplayName": "Test Hospital"}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	return s, nil
}

// Violations are the requests that did not conform to the discovery document.
func (s *Server) Violations() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.violations)
}

// Requests are "METHOD path" of every request received, in order.
func (s *Server) Requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.requests)
}

// Enterprise returns the enterprise resource as it stands.
func (s *Server) Enterprise(name string) map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	return clone(s.enterprises[name])
}

// Policy returns a policy as last patched, or nil.
func (s *Server) Policy(name string) map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	return clone(s.policies[name])
}

// Update changes a device's facts under the server's lock.
func (s *Server) Update(name string, fn func(d *Device)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if d := s.devices[name]; d != nil {
		fn(d)
	}
}

// Device returns a copy of a device, or nil.
func (s *Server) Device(name string) *Device {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.devices[name]
	if d == nil {
		return nil
	}
	c := *d
	c.Commands = slices.Clone(d.Commands)
	return &c
}

// Enroll enrolls a phone with an enrollment token's value, as scanning its QR code does, and
// returns the device's name. The device applies its token's policy at once.
func (s *Server) Enroll(tokenValue string, d Device) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	tok, ok := s.tokens[tokenValue]
	if !ok {
		return "", fmt.Errorf("fakeamapi: no enrollment token %q", tokenValue)
	}
	if exp, _ := time.Parse(time.RFC3339Nano, str(tok["expirationTimestamp"])); time.Now().After(exp) {
		return "", fmt.Errorf("fakeamapi: enrollment token expired")
	}
	if tok["oneTimeOnly"] == true && tok["used"] == true {
		return "", fmt.Errorf("fakeamapi: one-time enrollment token already used")
	}
	tok["used"] = true
	ent, _, _ := strings.Cut(strings.TrimPrefix(str(tok["name"]), "enterprises/"), "/")
	s.nextID++
	d.Name = fmt.Sprintf("enterprises/%s/devices/%x%04d", ent, randBytes(4), s.nextID)
	d.policyName = str(tok["policyName"])
	d.tokenData = str(tok["additionalData"])
	d.tokenName = str(tok["name"])
	d.personal = tok["allowPersonalUsage"] == "PERSONAL_USAGE_ALLOWED"
	d.state = "ACTIVE"
	d.enrolled = time.Now().UTC()
	if p := s.policies[d.policyName]; p != nil {
		d.policyVersion = str(p["version"])
	}
	s.devices[d.Name] = &d
	return d.Name, nil
}

// DeviceJSON is a device resource as the API and STATUS_REPORT notifications carry it.
func (s *Server) DeviceJSON(name string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.devices[name]
	if d == nil {
		return nil, fmt.Errorf("fakeamapi: no device %s", name)
	}
	return json.Marshal(s.resource(d))
}

// resource renders a device as the API's Device; s.mu is held.
func (s *Server) resource(d *Device) map[string]any {
	now := time.Now().UTC()
	d.LastStatusTime = now
	var details []any
	for _, setting := range d.Refuses {
		details = append(details, map[string]any{"settingName": setting, "nonComplianceReason": "USER_ACTION"})
	}
	posture := map[string]any{"devicePosture": "SECURE"}
	if d.Rooted {
		posture = map[string]any{"devicePosture": "POTENTIALLY_COMPROMISED",
			"postureDetails": []any{map[string]any{"securityRisk": "COMPROMISED_OS"}}}
	}
	encryption := "INACTIVE"
	if d.Encrypted {
		encryption = "ACTIVE_PER_USER"
	}
	mode, ownership := "DEVICE_OWNER", "COMPANY_OWNED"
	if d.personal {
		mode, ownership = "PROFILE_OWNER", "PERSONALLY_OWNED"
	}
	level, _ := strconv.Atoi(strings.SplitN(d.AndroidVersion, ".", 2)[0])
	state := d.state
	if d.Deleted {
		state = "DELETED"
	}
	res := map[string]any{
		"name": d.Name, "managementMode": mode, "ownership": ownership,
		"state": state, "appliedState": state,
		"policyName": d.policyName, "appliedPolicyName": d.policyName, "appliedPolicyVersion": d.policyVersion,
		"policyCompliant":      len(details) == 0,
		"nonComplianceDetails": details,
		"enrollmentTime":       d.enrolled.Format(time.RFC3339Nano),
		"enrollmentTokenData":  d.tokenData, "enrollmentTokenName": d.tokenName,
		"lastStatusReportTime": now.Format(time.RFC3339Nano),
		"apiLevel":             level + 20,
		"softwareInfo": map[string]any{"androidVersion": d.AndroidVersion, "securityPatchLevel": d.SecurityPatch,
			"androidBuildNumber": "AP4A." + d.SecurityPatch},
		"hardwareInfo":    map[string]any{"brand": "Google", "model": "Pixel 9", "serialNumber": "SIM" + strings.ToUpper(d.Name[len(d.Name)-8:])},
		"deviceSettings":  map[string]any{"isEncrypted": d.Encrypted, "encryptionStatus": encryption, "isDeviceSecure": d.Secure},
		"securityPosture": posture,
	}
	// What the fake answers is held to the discovery document too.
	if errs := s.doc.CheckValue("Device", res); len(errs) > 0 {
		s.violations = append(s.violations, "device resource "+d.Name+": "+strings.Join(errs, "; "))
	}
	return res
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/token" {
		s.serveToken(w, r)
		return
	}
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests = append(s.requests, r.Method+" "+r.URL.Path)
	if !s.authorized(r) {
		s.fail(w, http.StatusUnauthorized, "request had invalid authentication credentials")
		return
	}
	path, ok := strings.CutPrefix(r.URL.Path, "/v1/")
	if !ok {
		s.fail(w, http.StatusNotFound, "not an AMAPI v1 path: "+r.URL.Path)
		return
	}
	verb := ""
	if i := strings.LastIndexByte(path, ':'); i > 0 {
		path, verb = path[:i], path[i+1:]
	}
	parts := strings.Split(path, "/")
	check := func(schema string) (map[string]any, bool) {
		if errs := s.doc.Check(schema, body); len(errs) > 0 {
			s.violations = append(s.violations, r.Method+" "+r.URL.Path+": "+strings.Join(errs, "; "))
			s.fail(w, http.StatusBadRequest, strings.Join(errs, "; "))
			return nil, false
		}
		var m map[string]any
		_ = json.Unmarshal(body, &m)
		return m, true
	}
	switch {
	case path == "signupUrls" && r.Method == http.MethodPost:
		q := r.URL.Query()
		if q.Get("projectId") == "" || !strings.HasPrefix(q.Get("callbackUrl"), "https://") {
			s.fail(w, http.StatusBadRequest, "projectId and an https callbackUrl are required")
			return
		}
		name := "signupUrls/C" + hex.EncodeToString(randBytes(8))
		s.signups[name] = &signup{project: q.Get("projectId"), callback: q.Get("callbackUrl")}
		s.reply(w, map[string]any{"name": name, "url": "https://enterprise.google.com/signup/android/email?origin=android&thirdPartyToken=" + name[len("signupUrls/"):]})
		return
	case path == "enterprises" && r.Method == http.MethodPost:
		m, ok := check("Enterprise")
		if !ok {
			return
		}
		q := r.URL.Query()
		su := s.signups[q.Get("signupUrlName")]
		if su == nil || su.token == "" || su.token != q.Get("enterpriseToken") || su.project != q.Get("projectId") || su.used {
			s.fail(w, http.StatusBadRequest, "no completed signup for this signupUrlName, enterpriseToken and projectId")
			return
		}
		su.used = true
		m["name"] = "enterprises/LC" + hex.EncodeToString(randBytes(5))
		s.enterprises[str(m["name"])] = m
		s.reply(w, m)
		return
	}
	if len(parts) < 2 || parts[0] != "enterprises" || s.enterprises["enterprises/"+parts[1]] == nil {
		s.fail(w, http.StatusNotFound, "no such enterprise")
		return
	}
	ent := "enterprises/" + parts[1]
	switch {
	case len(parts) == 2 && r.Method == http.MethodGet:
		s.reply(w, s.enterprises[ent])
	case len(parts) == 2 && r.Method == http.MethodPatch:
		m, ok := check("Enterprise")
		if !ok {
			return
		}
		e := s.enterprises[ent]
		for _, f := range strings.Split(r.URL.Query().Get("updateMask"), ",") {
			if f != "" {
				e[f] = m[f]
			}
		}
		s.reply(w, e)
	case len(parts) == 4 && parts[2] == "policies" && r.Method == http.MethodPatch:
		m, ok := check("Policy")
		if !ok {
			return
		}
		name := path
		v := 1
		if old := s.policies[name]; old != nil {
			n, _ := strconv.Atoi(str(old["version"]))
			v = n + 1
		}
		m["name"], m["version"] = name, strconv.Itoa(v)
		s.policies[name] = m
		s.reply(w, m)
	case len(parts) == 3 && parts[2] == "enrollmentTokens" && r.Method == http.MethodPost:
		m, ok := check("EnrollmentToken")
		if !ok {
			return
		}
		if s.policies[str(m["policyName"])] == nil && s.policies[ent+"/policies/"+str(m["policyName"])] == nil {
			s.fail(w, http.StatusBadRequest, "enrollment token names no policy of the enterprise")
			return
		}
		if !strings.HasPrefix(str(m["policyName"]), "enterprises/") {
			m["policyName"] = ent + "/policies/" + str(m["policyName"])
		}
		dur := time.Hour
		if d, err := time.ParseDuration(str(m["duration"])); err == nil {
			dur = d
		}
		value := strings.ToUpper(base64.RawURLEncoding.EncodeToString(randBytes(15)))
		m["value"] = value
		m["name"] = ent + "/enrollmentTokens/" + strings.ToLower(value[:12])
		m["expirationTimestamp"] = time.Now().Add(dur).UTC().Format(time.RFC3339Nano)
		qr, _ := json.Marshal(map[string]any{
			"android.app.extra.PROVISIONING_DEVICE_ADMIN_COMPONENT_NAME": "com.google.android.apps.work.clouddpc/.receivers.CloudDeviceAdminReceiver",
			"android.app.extra.PROVISIONING_ADMIN_EXTRAS_BUNDLE":         map[string]any{"com.google.android.apps.work.clouddpc.EXTRA_ENROLLMENT_TOKEN": value},
		})
		m["qrCode"] = string(qr)
		s.tokens[value] = m
		out := clone(m)
		delete(out, "used")
		s.reply(w, out)
	case len(parts) == 3 && parts[2] == "devices" && r.Method == http.MethodGet:
		s.listDevices(w, r, ent)
	case len(parts) == 4 && parts[2] == "devices":
		d := s.devices[path]
		if d == nil || d.Deleted { // a deleted device is gone from the API, as at Google
			s.fail(w, http.StatusNotFound, "no such device")
			return
		}
		switch {
		case r.Method == http.MethodGet && verb == "":
			s.reply(w, s.resource(d))
		case r.Method == http.MethodPatch && verb == "":
			m, ok := check("Device")
			if !ok {
				return
			}
			if r.URL.Query().Get("updateMask") != "policyName" || s.policies[str(m["policyName"])] == nil {
				s.fail(w, http.StatusBadRequest, "only policyName, naming a policy of the enterprise, is faked")
				return
			}
			d.policyName, d.policyVersion = str(m["policyName"]), str(s.policies[str(m["policyName"])]["version"])
			s.reply(w, s.resource(d))
		case r.Method == http.MethodDelete && verb == "":
			flags := r.URL.Query()["wipeDataFlags"]
			for _, f := range flags {
				if !slices.Contains([]string{"PRESERVE_RESET_PROTECTION_DATA", "WIPE_EXTERNAL_STORAGE", "WIPE_ESIMS"}, f) {
					s.violations = append(s.violations, "DELETE "+path+": wipeDataFlags "+f)
					s.fail(w, http.StatusBadRequest, "bad wipeDataFlags "+f)
					return
				}
			}
			d.Deleted, d.WipeDataFlags = true, flags
			s.reply(w, map[string]any{})
		case r.Method == http.MethodPost && verb == "issueCommand":
			m, ok := check("Command")
			if !ok {
				return
			}
			if m["type"] == "WIPE" && d.OldDevicePolicy {
				s.fail(w, http.StatusBadRequest, "API_LEVEL: the device's Android Device Policy does not support WIPE")
				return
			}
			d.Commands = append(d.Commands, m)
			switch m["type"] {
			case "START_LOST_MODE":
				d.state = "LOST"
			case "STOP_LOST_MODE":
				d.state = "ACTIVE"
			case "WIPE":
				d.Deleted = true
			}
			s.nextID++
			op := map[string]any{"name": fmt.Sprintf("%s/operations/%d", path, s.nextID), "done": !s.slowCommands,
				"metadata": map[string]any{"@type": "type.googleapis.com/google.android.devicemanagement.v1.Command",
					"type": m["type"], "createTime": time.Now().UTC().Format(time.RFC3339Nano)}}
			s.operations[str(op["name"])] = op
			s.reply(w, op)
		default:
			s.fail(w, http.StatusMethodNotAllowed, "method not faked")
		}
	case len(parts) == 6 && parts[4] == "operations" && r.Method == http.MethodGet:
		op := s.operations[path]
		if op == nil {
			s.fail(w, http.StatusNotFound, "no such operation")
			return
		}
		s.reply(w, op)
	default:
		s.fail(w, http.StatusNotFound, "method not faked: "+r.Method+" "+r.URL.Path)
	}
}

// listDevices pages devices two at a time, so a client that ignores nextPageToken misses some.
func (s *Server) listDevices(w http.ResponseWriter, r *http.Request, ent string) {
	var names []string
	for n := range s.devices {
		if strings.HasPrefix(n, ent+"/devices/") && !s.devices[n].Deleted {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	start, _ := strconv.Atoi(r.URL.Query().Get("pageToken"))
	const page = 2
	out := map[string]any{}
	var list []any
	for i := start; i < len(names) && i < start+page; i++ {
		list = append(list, s.resource(s.devices[names[i]]))
	}
	out["devices"] = list
	if start+page < len(names) {
		out["nextPageToken"] = strconv.Itoa(start + page)
	}
	s.reply(w, out)
}

func (s *Server) reply(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func (s *Server) fail(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{"code": code, "message": msg, "status": http.StatusText(code)}})
}

func str(v any) string { s, _ := v.(string); return s }

func clone(m map[string]any) map[string]any {
	if m == nil {
		return nil
	}
	b, _ := json.Marshal(m)
	var out map[string]any
	_ = json.Unmarshal(b, &out)
	return out
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}
