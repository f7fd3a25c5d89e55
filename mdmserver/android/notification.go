package android

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"google.golang.org/api/androidmanagement/v1"
)

// Bounds on a push.
const (
	// MaxPushBody bounds a push request; a device status report with every section is a few
	// KiB, and Pub/Sub messages are at most 10 MB, which Hale does not need.
	MaxPushBody = 512 << 10
	maxIDLen    = 128
)

// Notification types the enterprise publishes ("test" is sent once when the topic is set).
const (
	TypeEnrollment   = "ENROLLMENT"
	TypeStatusReport = "STATUS_REPORT"
	TypeCommand      = "COMMAND"
	TypeTest         = "test"
)

// Notification is one AMAPI notification taken out of its Pub/Sub push envelope.
type Notification struct {
	// MessageID is Pub/Sub's ID of the message, the key of de-duplication.
	MessageID string
	// Type is the notificationType attribute.
	Type string
	// Device is the device of an ENROLLMENT or STATUS_REPORT notification.
	Device *androidmanagement.Device
	// Operation is the command operation of a COMMAND notification.
	Operation *androidmanagement.Operation
}

// pushEnvelope is Pub/Sub's push request body.
type pushEnvelope struct {
	Message *struct {
		Data       string            `json:"data"`
		Attributes map[string]string `json:"attributes"`
		MessageID  string            `json:"messageId"`
		// message_id is the same ID in Pub/Sub's other spelling; either is accepted.
		MessageIDAlt string `json:"message_id"`
	} `json:"message"`
	Subscription string `json:"subscription"`
}

// ErrMalformed wraps every reason a push body is not an AMAPI notification.
var ErrMalformed = errors.New("android: malformed notification")

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}

// ParseNotification reads a Pub/Sub push body holding an AMAPI notification. It checks shape
// only: who sent it is verifyPush's business, and whether the device belongs to the bound
// enterprise the caller's. Unknown notification types parse with neither Device nor
// Operation.
func ParseNotification(body []byte) (*Notification, error) {
	if len(body) > MaxPushBody {
		return nil, malformed("body larger than %d bytes", MaxPushBody)
	}
	var env pushEnvelope
	if err := json.Unmarshal(body, &env); err != nil {
		return nil, malformed("not a Pub/Sub push envelope: %v", err)
	}
	m := env.Message
	if m == nil {
		return nil, malformed("no message")
	}
	n := &Notification{MessageID: m.MessageID, Type: m.Attributes["notificationType"]}
	if n.MessageID == "" {
		n.MessageID = m.MessageIDAlt
	}
	if n.MessageID == "" || len(n.MessageID) > maxIDLen || !printable(n.MessageID) {
		return nil, malformed("the message ID must be 1 to %d printable characters", maxIDLen)
	}
	if n.Type == "" || len(n.Type) > 64 || !printable(n.Type) {
		return nil, malformed("no notificationType attribute")
	}
	data, err := base64.StdEncoding.DecodeString(m.Data)
	if err != nil {
		return nil, malformed("message data is not base64: %v", err)
	}
	switch n.Type {
	case TypeEnrollment, TypeStatusReport:
		var d androidmanagement.Device
		if err := strictJSON(data, &d); err != nil {
			return nil, malformed("%s data is not a device: %v", n.Type, err)
		}
		if !deviceName.MatchString(d.Name) {
			return nil, malformed("%s names no device (%q)", n.Type, clip(d.Name))
		}
		n.Device = &d
	case TypeCommand:
		var op androidmanagement.Operation
		if err := strictJSON(data, &op); err != nil {
			return nil, malformed("COMMAND data is not an operation: %v", err)
		}
		if !operationName.MatchString(op.Name) {
			return nil, malformed("COMMAND names no operation (%q)", clip(op.Name))
		}
		n.Operation = &op
	}
	return n, nil
}

// strictJSON decodes one JSON value into v; json.Unmarshal refuses anything after it.
func strictJSON(data []byte, v any) error { return json.Unmarshal(data, v) }

func printable(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}

func clip(s string) string {
	if len(s) > 80 {
		s = s[:80] + "…"
	}
	return strings.ToValidUTF8(s, "?")
}
