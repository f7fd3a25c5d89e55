package android

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
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
	enterpriseName = regexp.MustCompile(`^enterprises/[A-Za-z0-9_-]{1,64}$`)
	topicName      = regexp.MustCompile(`^projects/[a-z][a-z0-9-]{4,28}[a-z0-9]/topics/[A-Za-z][A-Za-z0-9._~+%-]{2,254}$`)
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
}

// serviceAccountKey is the part of a Google service account key file Hale checks.
type serviceAccountKey struct {
	Type        string `json:"type"`
	ProjectID   string `json:"project_id"`
	ClientEmail string `json:"client_email"`
	PrivateKey  string `json:"private_key"`
	TokenURI    string `json:"token_uri"`
}

// checkKey validates a service account key file and returns its account.
func checkKey(b []byte) (string, error) {
	if len(b) == 0 || len(b) > MaxKeySize {
		return "", refuse(400, "the service account key must be a JSON key file of at most %d bytes", MaxKeySize)
	}
	var k serviceAccountKey
	if err := json.Unmarshal(b, &k); err != nil {
		return "", refuse(400, "the service account key is not JSON: %v", err)
	}
	if k.Type != "service_account" || k.ClientEmail == "" || k.PrivateKey == "" || k.TokenURI == "" {
		return "", refuse(400, "the service account key must be a Google service account key file (type service_account, client_email, private_key, token_uri)")
	}
	if !strings.HasSuffix(k.ClientEmail, ".gserviceaccount.com") || len(k.ClientEmail) > 256 {
		return "", refuse(400, "client_email %q is not a Google service account", k.ClientEmail)
	}
	blk, _ := pem.Decode([]byte(k.PrivateKey))
	if blk == nil {
		return "", refuse(400, "the service account key's private_key is not PEM")
	}
	if _, err := x509.ParsePKCS8PrivateKey(blk.Bytes); err != nil {
		return "", refuse(400, "the service account key's private_key is not a PKCS #8 key: %v", err)
	}
	return k.ClientEmail, nil
}

// NotificationTypes are the notifications Hale asks the enterprise to publish.
var NotificationTypes = []string{"ENROLLMENT", "STATUS_REPORT", "COMMAND"}

// Bind binds Hale to an existing enterprise: it checks the key, proves it works by reading the
// enterprise, configures the enterprise's Pub/Sub notifications (ENROLLMENT, STATUS_REPORT,
// COMMAND) to topic, and stores the binding with the key sealed under the master key. A
// binding replaces the previous one. by is recorded as who bound.
func (s *Service) Bind(ctx context.Context, req BindRequest, by audit.Entry) (*Binding, error) {
	if !enterpriseName.MatchString(req.Enterprise) {
		return nil, refuse(400, "enterprise must be an enterprise name such as enterprises/LC0123abcd")
	}
	if !topicName.MatchString(req.Topic) {
		return nil, refuse(400, "topic must be a Pub/Sub topic name such as projects/my-project/topics/amapi")
	}
	account, err := checkKey(req.ServiceAccountKey)
	if err != nil {
		return nil, err
	}
	c, err := s.newClient(ctx, req.ServiceAccountKey)
	if err != nil {
		return nil, refuse(400, "the service account key cannot make an AMAPI client: %v", err)
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
