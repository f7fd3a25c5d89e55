package agent

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"net/http"
	"testing"

	"github.com/halemdm/hale/agent/localapi"
	"github.com/halemdm/hale/agent/localproto"
	"github.com/halemdm/hale/internal/problem"
)

// IssueAppToken fails closed: a server that is down, answers garbage or cannot be reached is
// an ordinary error (the endpoint says server_unreachable), a refusal of the device is
// device_denied with the server's reasons, and nothing is ever answered from a cache.
func TestIssueAppTokenFailsClosed(t *testing.T) {
	f := newFakeServer(t)
	store, _ := enrollDevice(t, f, "tok-1")
	a := newAgent(t, store, (&counterCollector{}).collect)
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	jwk, _ := localproto.PublicJWK(&k.PublicKey)
	req := localapi.TokenRequest{Key: jwk, Peer: localapi.Peer{UID: "1000", User: "alice", Executable: "/opt/chat/chat", PID: 42}}

	var denied, calls int // touched only by the handler, between the agent's sequential calls
	mux := f.srv.Config.Handler.(*http.ServeMux)
	mux.HandleFunc("POST /agent/v1/app-token", f.device(func(w http.ResponseWriter, r *http.Request, id, _ string) {
		calls++
		if denied > 0 {
			p := problem.New(http.StatusForbidden, "access-denied", "the device may not open sessions now: device_wiped")
			p.Reasons = []map[string]string{{"code": "device_wiped", "detail": "wiped"}}
			problem.Write(w, r, p)
			return
		}
		writeJSON(w, 200, map[string]any{"token": "h.c.s", "token_type": "posture+jwt", "expires_at": "2030-01-01T00:00:00Z", "in_grace": false})
	}))

	tok, err := a.IssueAppToken(context.Background(), req)
	if err != nil || tok.Token != "h.c.s" || tok.DeviceID != a.DeviceID() {
		t.Fatalf("token: %+v %v", tok, err)
	}
	denied = 1
	_, err = a.IssueAppToken(context.Background(), req)
	var le *localproto.Error
	if !errors.As(err, &le) || le.Code != localproto.CodeDeviceDenied || len(le.Reasons) != 1 || le.Reasons[0] != "device_wiped" {
		t.Fatalf("denied device: %v", err)
	}
	for _, mode := range []int{modeDown, modeGarbage} {
		f.set(func(f *fakeServer) { f.mode = mode })
		if _, err := a.IssueAppToken(context.Background(), req); err == nil || errors.As(err, &le) {
			t.Fatalf("server mode %v: %v, want an ordinary error", mode, err)
		}
	}
	f.srv.Close()
	if _, err := a.IssueAppToken(context.Background(), req); err == nil || errors.As(err, &le) {
		t.Fatalf("server gone: %v, want an ordinary error", err)
	}
	if calls != 2 {
		t.Fatalf("%d calls reached the server", calls)
	}
}
