package api

import (
	"encoding/json"
	"time"
)

// AndroidBindRequest is the body of PUT /api/v1/android/binding: bind Hale to an existing
// Android Management API enterprise with the organisation's service account.
type AndroidBindRequest struct {
	// Enterprise is the enterprise's name, "enterprises/LC0123abcd". Empty with SignupURLName
	// and EnterpriseToken: a new enterprise is created from a completed signup.
	Enterprise      string `json:"enterprise,omitempty"`
	SignupURLName   string `json:"signup_url_name,omitempty"`
	EnterpriseToken string `json:"enterprise_token,omitempty"`
	// Topic is the Pub/Sub topic the enterprise publishes its notifications to,
	// "projects/P/topics/T"; its push subscription points at the server's /android/pubsub.
	Topic string `json:"topic"`
	// ServiceAccountKey is the service account's JSON key file, as is. It is stored sealed under
	// the server's master key and never shown again.
	ServiceAccountKey json.RawMessage `json:"service_account_key"`
}

// AndroidBinding is the binding as the admin API shows it: never the key.
type AndroidBinding struct {
	Enterprise     string    `json:"enterprise"`
	ServiceAccount string    `json:"service_account"`
	Topic          string    `json:"topic"`
	BoundAt        time.Time `json:"bound_at"`
	BoundBy        string    `json:"bound_by,omitempty"`
	// PushPath is the path of the server's Pub/Sub push endpoint, and PushAudience the audience
	// its push subscription's ID tokens must carry.
	PushPath     string `json:"push_path"`
	PushAudience string `json:"push_audience,omitempty"`
}

// AndroidEnrollment is what a phone enrolls with: an Android Management API enrollment token,
// one-time, expiring with the Hale enrollment.
type AndroidEnrollment struct {
	// Link opens the enrollment on the phone (a personal phone adds its work profile there).
	Link string `json:"link"`
	// QRCode is the provisioning JSON a company phone's setup wizard scans; QRPNG is that as a
	// PNG image (base64 in JSON).
	QRCode string `json:"qr_code"`
	QRPNG  []byte `json:"qr_png"`
	// TokenName is the AMAPI enrollment token's name; Policy the AMAPI policy the phone gets.
	TokenName string    `json:"token_name"`
	Policy    string    `json:"policy"`
	ExpiresAt time.Time `json:"expires_at"`
}

// AndroidSignupRequest is the body of POST /api/v1/android/signup: start creating a new
// enterprise in the service account's project.
type AndroidSignupRequest struct {
	ServiceAccountKey json.RawMessage `json:"service_account_key"`
	// AdminEmail prefills the signup page with the administrator's address.
	AdminEmail string `json:"admin_email,omitempty"`
}

// AndroidSignup is the signup page to open; its name goes to the binding with the enterprise
// token Google's callback (CallbackURL) shows.
type AndroidSignup struct {
	Name        string `json:"name"`
	URL         string `json:"url"`
	CallbackURL string `json:"callback_url"`
}
