package android

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"

	"google.golang.org/api/androidmanagement/v1"

	"github.com/halemdm/hale/mdmserver/audit"
)

// Refusal is an error an operator can act on: a request Hale will not carry out, and why.
type Refusal struct {
	// Status is the HTTP status that says it (400, 403, 409, 502).
	Status int
	Detail string
}

func (r *Refusal) Error() string { return "android: " + r.Detail }

func refuse(status int, format string, args ...any) error {
	return &Refusal{Status: status, Detail: fmt.Sprintf(format, args...)}
}

// Limits on what an operator sends.
const (
	// MaxKeySize bounds a service account key file (a real one is about 2.3 KiB).
	MaxKeySize = 16 << 10
)

var (
	enterpriseName  = regexp.MustCompile(`^enterprises/[A-Za-z0-9_-]{1,64}$`)
	signupName      = regexp.MustCompile(`^signupUrls/[A-Za-z0-9_-]{1,128}$`)
	enterpriseToken = regexp.MustCompile(`^[A-Za-z0-9_-]{1,512}$`)
	topicName       = regexp.MustCompile(`^projects/[a-z][a-z0-9-]{4,28}[a-z0-9]/topics/[A-Za-z][A-Za-z0-9._~+%-]{2,254}$`)
)

// BindRequest is what binding takes.
type BindRequest struct {
	// Enterprise is an existing enterprise ("enterprises/LC0123abcd").
	Enterprise string
	// ServiceAccountKey is the JSON key file of the organisation's service account, which must
	// hold the Android Management User role in the enterprise's Cloud project.
	ServiceAccountKey []byte
	// Topic is the Pub/Sub topic the enterprise publishes to; its push subscription points at
	// the server's /android/pubsub. Google's AMAPI service account must be allowed to publish.
	Topic string
	// SignupURLName and EnterpriseToken create a new enterprise instead (the signup flow, see
	// Signup): the signup URL's name and the token Google's callback carried.
	SignupURLName, EnterpriseToken string
}

// serviceAccountKey is the part of a Google service account key file Hale checks.
type serviceAccountKey struct {
	Type        string `json:"type"`
	ProjectID   string `json:"project_id"`
	ClientEmail string `json:"client_email"`
	PrivateKey  string `json:"private_key"`
	TokenURI    string `json:"token_uri"`
}

// parseKey validates a service account key file.
func parseKey(b []byte) (*serviceAccountKey, error) {
	if len(b) == 0 || len(b) > MaxKeySize {
		return nil, refuse(400, "the service account key must be a JSON key file of at most %d bytes", MaxKeySize)
	}
	var k serviceAccountKey
	if err := json.Unmarshal(b, &k); err != nil {
		return nil, refuse(400, "the service account key is not JSON: %v", err)
	}
	if k.Type != "service_account" || k.ClientEmail == "" || k.PrivateKey == "" || k.TokenURI == "" {
		return nil, refuse(400, "the service account key must be a Google service account key file (type service_account, client_email, private_key, token_uri)")
	}
	if !strings.HasSuffix(k.ClientEmail, ".gserviceaccount.com") || len(k.ClientEmail) > 256 {
		return nil, refuse(400, "client_email %q is not a Google service account", k.ClientEmail)
	}
	blk, _ := pem.Decode([]byte(k.PrivateKey))
	if blk == nil {
		return nil, refuse(400, "the service account key's private_key is not PEM")
	}
	if _, err := x509.ParsePKCS8PrivateKey(blk.Bytes); err != nil {
		return nil, refuse(400, "the service account key's private_key is not a PKCS #8 key: %v", err)
	}
	return &k, nil
}

// NotificationTypes are the notifications Hale asks the enterprise to publish.
var NotificationTypes = []string{"ENROLLMENT", "STATUS_REPORT", "COMMAND"}

// Bind binds Hale to an existing enterprise: it checks the key, proves it works by reading the
// enterprise, configures the enterprise's Pub/Sub notifications (ENROLLMENT, STATUS_REPORT,
// COMMAND) to topic, and stores the binding with the key sealed under the master key. A
// binding replaces the previous one. by is recorded as who bound.
func (s *Service) Bind(ctx context.Context, req BindRequest, by audit.Entry) (*Binding, error) {
	signup := req.Enterprise == "" && (req.SignupURLName != "" || req.EnterpriseToken != "")
	switch {
	case signup && (!signupName.MatchString(req.SignupURLName) || !enterpriseToken.MatchString(req.EnterpriseToken)):
		return nil, refuse(400, "a new enterprise needs the signup URL's name (signupUrls/...) and the enterprise token its callback carried")
	case !signup && !enterpriseName.MatchString(req.Enterprise):
		return nil, refuse(400, "enterprise must be an enterprise name such as enterprises/LC0123abcd")
	}
	if !topicName.MatchString(req.Topic) {
		return nil, refuse(400, "topic must be a Pub/Sub topic name such as projects/my-project/topics/amapi")
	}
	key, err := parseKey(req.ServiceAccountKey)
	if err != nil {
		return nil, err
	}
	account := key.ClientEmail
	c, err := s.newClient(ctx, req.ServiceAccountKey)
	if err != nil {
		return nil, refuse(400, "the service account key cannot make an AMAPI client: %v", err)
	}
	if signup {
		if key.ProjectID == "" {
			return nil, refuse(400, "the service account key names no project_id to create the enterprise in")
		}
		ent := &androidmanagement.Enterprise{PubsubTopic: req.Topic, EnabledNotificationTypes: NotificationTypes}
		created, err := c.Enterprises.Create(ent).ProjectId(key.ProjectID).SignupUrlName(req.SignupURLName).
			EnterpriseToken(req.EnterpriseToken).Context(ctx).Do()
		if err != nil {
			return nil, refuse(502, "creating the enterprise failed: %v", err)
		}
		if !enterpriseName.MatchString(created.Name) {
			return nil, refuse(502, "the created enterprise has no usable name (%q)", clip(created.Name))
		}
		req.Enterprise = created.Name
	}
	if _, err := c.Enterprises.Get(req.Enterprise).Context(ctx).Do(); err != nil {
		return nil, refuse(502, "reading %s with this service account failed: %v", req.Enterprise, err)
	}
	patch := &androidmanagement.Enterprise{PubsubTopic: req.Topic, EnabledNotificationTypes: NotificationTypes}
	if _, err := c.Enterprises.Patch(req.Enterprise, patch).UpdateMask("pubsubTopic,enabledNotificationTypes").Context(ctx).Do(); err != nil {
		return nil, refuse(502, "configuring %s's notifications failed: %v", req.Enterprise, err)
	}
	b := &Binding{Enterprise: req.Enterprise, ServiceAccount: account, Topic: req.Topic,
		SealedKey: s.dep.Key.Seal(sealPurpose(req.Enterprise), req.ServiceAccountKey),
		BoundAt:   s.now().UTC(), BoundBy: by.Actor}
	err = s.dep.Store.Update(ctx, func(tx Tx) error {
		if err := tx.Android().PutBinding(ctx, b); err != nil {
			return err
		}
		by.Action, by.Target, by.Outcome = "android.bind", req.Enterprise, audit.OutcomeOK
		by.Details = map[string]string{"service_account": account, "topic": req.Topic}
		_, err := audit.Append(ctx, tx.Audit(), by)
		return err
	})
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.client, s.boundAt, s.synced = c, b.BoundAt, map[string]string{}
	s.mu.Unlock()
	out := *b
	out.SealedKey = nil
	return &out, nil
}

// Binding returns the binding without its sealed key, or ErrNotBound.
func (s *Service) Binding(ctx context.Context) (*Binding, error) {
	b, err := s.binding(ctx)
	if err != nil {
		return nil, err
	}
	b.SealedKey = nil
	return b, nil
}

// SignupPath is where Google's signup flow returns with the new enterprise's token.
const SignupPath = "/android/signup-complete"

// SignupURL is where an organisation's administrator creates its enterprise.
type SignupURL struct {
	// Name identifies the signup to enterprises.create; URL is the page to open.
	Name, URL string
	// CallbackURL is where Google sends the administrator back, with the enterprise token.
	CallbackURL string
}

// Signup starts the signup flow for a new enterprise in the service account's project: it
// returns the page the organisation's administrator opens. Google then sends the browser to
// the server's SignupPath with an enterpriseToken, which Bind takes with the URL's name.
// Nothing is stored until Bind.
func (s *Service) Signup(ctx context.Context, serviceAccountKey []byte, adminEmail string) (*SignupURL, error) {
	key, err := parseKey(serviceAccountKey)
	if err != nil {
		return nil, err
	}
	if key.ProjectID == "" {
		return nil, refuse(400, "the service account key names no project_id to create the enterprise in")
	}
	if s.publicURL == "" {
		return nil, refuse(409, "the server has no public URL for Google's signup callback")
	}
	c, err := s.newClient(ctx, serviceAccountKey)
	if err != nil {
		return nil, refuse(400, "the service account key cannot make an AMAPI client: %v", err)
	}
	cb := s.publicURL + SignupPath
	call := c.SignupUrls.Create().ProjectId(key.ProjectID).CallbackUrl(cb)
	if adminEmail != "" {
		call = call.AdminEmail(adminEmail)
	}
	u, err := call.Context(ctx).Do()
	if err != nil {
		return nil, refuse(502, "creating the signup URL failed: %v", err)
	}
	if !signupName.MatchString(u.Name) || !strings.HasPrefix(u.Url, "https://") {
		return nil, refuse(502, "the signup URL answer is not usable")
	}
	return &SignupURL{Name: u.Name, URL: u.Url, CallbackURL: cb}, nil
}

// SignupComplete serves GET /android/signup-complete, where Google returns the administrator
// after the enterprise's signup: it shows the enterprise token to give to mdmctl android bind.
// The page is plain text, so a crafted token cannot run script.
func (s *Service) SignupComplete(w http.ResponseWriter, r *http.Request) {
	tok := r.URL.Query().Get("enterpriseToken")
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Cache-Control", "no-store")
	if !enterpriseToken.MatchString(tok) {
		w.WriteHeader(http.StatusBadRequest)
		_, _ = io.WriteString(w, "This page expects the enterpriseToken Google's Android enterprise signup sends.\n")
		return
	}
	_, _ = io.WriteString(w, "The Android enterprise signup is complete. Finish binding with:\n\n"+
		"  mdmctl android bind --signup-name SIGNUP-NAME --enterprise-token "+tok+" --topic projects/P/topics/T --key SERVICE-ACCOUNT.json\n")
}
