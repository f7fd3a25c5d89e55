package android

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"time"

	"google.golang.org/api/androidmanagement/v1"

	"github.com/halemdm/hale/internal/httpjson"
	"github.com/halemdm/hale/internal/problem"
)

// PushAnswer is the body of a push's 200 answer: processed, or duplicate for a message ID
// already handled (acknowledged, so Pub/Sub stops redelivering, and ignored).
type PushAnswer struct {
	Status string `json:"status"`
}

// Push serves POST /android/pubsub, the enterprise's Pub/Sub push subscription. It refuses,
// in order: a request without a Google-signed ID token for the configured audience (401), a
// body over MaxPushBody (413), one that is no AMAPI notification (400), no bound enterprise
// (409), and a device or operation outside the bound enterprise (403). A message ID already
// handled is acknowledged without effect. Anything else is processed before it is
// acknowledged, so a failure (5xx) makes Pub/Sub deliver it again.
func (s *Service) Push(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	// Pub/Sub's push authentication is an OIDC bearer token.
	w.Header().Set("WWW-Authenticate", `Bearer realm="android-pubsub"`)
	if !ok || tok == "" {
		s.count(outcomeUnauthenticated)
		problem.Error(w, r, http.StatusUnauthorized, "push_unauthenticated", "a Pub/Sub push carries a Google-signed ID token")
		return
	}
	if err := s.verifyPush(ctx, tok); err != nil {
		s.count(outcomeUnauthenticated)
		s.log.WarnContext(ctx, "android: push refused", "err", err)
		problem.Error(w, r, http.StatusUnauthorized, "push_unauthenticated", "the push's ID token is not Google's for this endpoint")
		return
	}
	w.Header().Del("WWW-Authenticate")
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxPushBody+1))
	if err != nil {
		s.count(outcomeMalformed)
		problem.BadRequest(w, r, "reading the push failed")
		return
	}
	if len(body) > MaxPushBody {
		s.count(outcomeMalformed)
		problem.Error(w, r, http.StatusRequestEntityTooLarge, "too_large", "a push is at most 512 KiB")
		return
	}
	n, err := ParseNotification(body)
	if err != nil {
		s.count(outcomeMalformed)
		problem.Error(w, r, http.StatusBadRequest, "malformed_notification", err.Error())
		return
	}
	status, err := s.Handle(ctx, n)
	if err != nil {
		var ref *Refusal
		switch {
		case errors.As(err, &ref):
			s.count(outcomeRefused)
			problem.Error(w, r, ref.Status, "android_refused", ref.Detail)
		case errors.Is(err, ErrNotBound):
			s.count(outcomeRefused)
			problem.Error(w, r, http.StatusConflict, "android_not_bound", err.Error())
		default:
			s.count(outcomeError)
			s.log.ErrorContext(ctx, "android: push not processed; Pub/Sub will deliver it again", "message", n.MessageID, "err", err)
			problem.Internal(w, r)
		}
		return
	}
	s.count(status)
	httpjson.Write(w, http.StatusOK, PushAnswer{Status: status})
}

// Handle processes one notification once: "duplicate" when its message ID was handled before,
// "processed" otherwise. The ID is recorded only after processing succeeded.
func (s *Service) Handle(ctx context.Context, n *Notification) (string, error) {
	b, err := s.binding(ctx)
	if err != nil {
		return "", err
	}
	var seen bool
	if err := s.dep.Store.View(ctx, func(tx Tx) error {
		var err error
		seen, err = tx.Android().Seen(ctx, n.MessageID)
		return err
	}); err != nil {
		return "", err
	}
	if seen {
		return "duplicate", nil
	}
	switch {
	case n.Device != nil:
		if err := s.ingestDevice(ctx, b, n.Device); err != nil {
			return "", err
		}
	case n.Operation != nil:
		if !inEnterprise(deviceOf(n.Operation.Name), b.Enterprise) {
			return "", refuse(http.StatusForbidden, "operation %s is not in the bound enterprise %s", clip(n.Operation.Name), b.Enterprise)
		}
		if err := s.commandDone(ctx, n.Operation); err != nil {
			return "", err
		}
	}
	err = s.dep.Store.Update(ctx, func(tx Tx) error {
		_, err := tx.Android().SeeMessage(ctx, n.MessageID, s.now())
		return err
	})
	return "processed", err
}

// MessageMemory is how long handled message IDs are remembered: Pub/Sub retains and redelivers
// an unacknowledged message for at most 7 days.
const MessageMemory = 7 * 24 * time.Hour

// Reconcile reads every device of the bound enterprise (devices.list, every page) and ingests
// each, catching what missed notifications would have said, then forgets message IDs older
// than MessageMemory. Without a binding it does nothing.
func (s *Service) Reconcile(ctx context.Context) (int, error) {
	c, b, err := s.amapi(ctx)
	if errors.Is(err, ErrNotBound) {
		return 0, nil
	} else if err != nil {
		return 0, err
	}
	s.mu.Lock()
	clear(s.synced) // patch every policy in use once this pass: another server may have changed it
	s.mu.Unlock()
	n := 0
	var failed error
	listed := map[string]bool{}
	err = c.Enterprises.Devices.List(b.Enterprise).PageSize(100).Pages(ctx, func(page *androidmanagement.ListDevicesResponse) error {
		for _, d := range page.Devices {
			if d == nil {
				continue
			}
			listed[d.Name] = true
			if err := s.ingestDevice(ctx, b, d); err != nil {
				s.log.WarnContext(ctx, "android: reconcile skipped a device", "device", clip(d.Name), "err", err)
				failed = err
				continue
			}
			n++
		}
		return nil
	})
	if err != nil {
		return n, err
	}
	// Every page was read: a phone Hale knows that the enterprise no longer lists was deleted
	// there (AMAPI keeps no deleted devices).
	if err := s.goneFromList(ctx, b, listed); err != nil {
		failed = err
	}
	if err := s.pendingOperations(ctx, c); err != nil {
		failed = err
	}
	if err := s.dep.Store.Update(ctx, func(tx Tx) error {
		_, err := tx.Android().PruneMessages(ctx, s.now().Add(-MessageMemory))
		return err
	}); err != nil {
		return n, err
	}
	return n, failed
}

// RunReconcile reconciles now and then every interval until ctx ends.
func (s *Service) RunReconcile(ctx context.Context, every time.Duration) {
	for {
		if n, err := s.Reconcile(ctx); err != nil {
			s.log.WarnContext(ctx, "android: reconcile incomplete", "devices", n, "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(every):
		}
	}
}
