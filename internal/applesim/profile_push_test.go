package applesim

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/micromdm/plist"

	"github.com/halemdm/hale/internal/fakeapns"
	"github.com/halemdm/hale/internal/randid"
	"github.com/halemdm/hale/internal/testpki"
)

func TestParseProfile(t *testing.T) {
	ca := testpki.NewCA(t, "applesim test CA")
	good := mobileconfig(t, "org.hale.p", passcodePayload(6), map[string]any{
		"PayloadType": "com.apple.applicationaccess", "PayloadVersion": 1,
		"PayloadIdentifier": "org.hale.r", "PayloadUUID": randid.UUID(), "allowScreenShot": false,
	})
	p, err := ParseProfile(good)
	if err != nil || p.Signed || len(p.Payloads) != 2 || p.Payloads[1].Content["allowScreenShot"] != false {
		t.Fatalf("unsigned profile: %+v, %v", p, err)
	}
	signed, _ := sign(t, ca, good)
	if p, err := ParseProfile(signed); err != nil || !p.Signed || len(p.SignerCertificates) != 1 || string(p.Raw) != string(good) {
		t.Fatalf("signed profile: %+v, %v", p, err)
	}
	tampered := append([]byte(nil), signed...)
	if i := indexOf(tampered, []byte("org.hale.p")); i >= 0 {
		tampered[i] = 'X'
	} else {
		t.Fatal("content not found in CMS")
	}
	for name, data := range map[string][]byte{
		"tampered signature": tampered,
		"garbage DER":        {0x30, 0x03, 0x01, 0x02},
		"not a plist":        []byte("hello"),
		"array root":         []byte(`<plist><array/></plist>`),
		"wrong version":      mustMarshal(t, map[string]any{"PayloadType": "Configuration", "PayloadVersion": 2, "PayloadIdentifier": "a", "PayloadUUID": "b"}),
		"not configuration":  mustMarshal(t, map[string]any{"PayloadType": "com.apple.wifi.managed", "PayloadVersion": 1, "PayloadIdentifier": "a", "PayloadUUID": "b"}),
		"encrypted":          mustMarshal(t, map[string]any{"PayloadType": "Configuration", "PayloadVersion": 1, "PayloadIdentifier": "a", "PayloadUUID": "b", "EncryptedPayloadContent": []byte{1}}),
		"bad payload":        mustMarshal(t, map[string]any{"PayloadType": "Configuration", "PayloadVersion": 1, "PayloadIdentifier": "a", "PayloadUUID": "b", "PayloadContent": []any{map[string]any{"PayloadType": "x"}}}),
		"too large":          make([]byte, MaxProfileSize+1),
	} {
		if _, err := ParseProfile(data); err == nil {
			t.Errorf("%s: accepted", name)
		} else {
			var pe *ProfileError
			if !errors.As(err, &pe) {
				t.Errorf("%s: error %T is not a *ProfileError", name, err)
			}
		}
	}
}

func TestStateIsACopy(t *testing.T) {
	dev, err := New("http://127.0.0.1:1/mdm")
	if err != nil {
		t.Fatal(err)
	}
	rec, _, err := dev.handle(commandPlist(t, "InstallProfile", map[string]any{"Payload": mobileconfig(t, "org.hale.c", passcodePayload(4))}))
	if err != nil || rec.Status != StatusAcknowledged {
		t.Fatalf("install: %+v %v", rec, err)
	}
	st := dev.State()
	st.Profiles[0].Payloads[0].Content["minLength"] = int64(99)
	st.Profiles[0].Identifier = "changed"
	again := dev.State()
	if v, _ := getInt(again.Profiles[0].Payloads[0].Content, "minLength"); v != 4 || again.Profiles[0].Identifier != "org.hale.c" {
		t.Errorf("snapshot aliases device state: %+v", again.Profiles[0])
	}
	// A device that cannot reach its server reports the failure.
	if _, err := dev.Poll(context.Background()); err == nil {
		t.Error("Poll to an unreachable server succeeded")
	}
}

func commandPlist(t testing.TB, requestType string, fields map[string]any) []byte {
	t.Helper()
	cmd := map[string]any{"RequestType": requestType}
	for k, v := range fields {
		cmd[k] = v
	}
	return mustMarshal(t, map[string]any{"CommandUUID": randid.UUID(), "Command": cmd})
}

func mustMarshal(t testing.TB, v any) []byte {
	t.Helper()
	b, err := plist.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func indexOf(b, sub []byte) int {
	for i := 0; i+len(sub) <= len(b); i++ {
		if string(b[i:i+len(sub)]) == string(sub) {
			return i
		}
	}
	return -1
}

func join(s []string) string {
	out := ""
	for i, x := range s {
		if i > 0 {
			out += " "
		}
		out += x
	}
	return out
}

// chanSource is a PushSource the test drives directly.
type chanSource struct{ ch chan fakeapns.Push }

func (c chanSource) Subscribe(string) (<-chan fakeapns.Push, func()) { return c.ch, func() {} }

func TestPushLoopIgnoresForeignPushMagic(t *testing.T) {
	h := newHarness(t, false)
	dev := h.newDevice(t)
	ctx := context.Background()
	if err := dev.Enroll(ctx); err != nil {
		t.Fatal(err)
	}
	src := chanSource{ch: make(chan fakeapns.Push, 4)}
	done := make(chan error, 1)
	go func() { done <- dev.RunPushLoop(ctx, src) }()

	uuid := h.enqueue(t, dev.UDID(), "ProfileList", nil)
	src.ch <- fakeapns.Push{Token: dev.PushToken(), PushMagic: "someone else's"}
	src.ch <- fakeapns.Push{Token: dev.PushToken(), PushMagic: dev.PushMagic()}
	close(src.ch)
	if err := <-done; err != nil {
		t.Fatalf("loop ended with %v, want nil when the source closes", err)
	}
	h.result(t, uuid)
	// One poll when the loop starts, one for the genuine push.
	if got := h.cap.idles(); got != 2 {
		t.Errorf("device polled %d times, want 2 (the foreign push must be ignored)", got)
	}
}

func TestServerDisownsDevice(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusForbidden)
		_, _ = w.Write([]byte(`{"code":"com.apple.unrecognized.device"}`))
	}))
	defer srv.Close()
	dev, err := New(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	dev.mu.Lock()
	dev.enrolled = true
	dev.mu.Unlock()
	_, err = dev.Poll(context.Background())
	var he *HTTPError
	if !errors.As(err, &he) || he.StatusCode != http.StatusForbidden {
		t.Fatalf("Poll: %v", err)
	}
	if dev.Enrolled() {
		t.Error("still enrolled after the server disowned the device")
	}
}

func TestWaitFor(t *testing.T) {
	dev, err := New("http://127.0.0.1:1/mdm")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		done <- dev.WaitFor(context.Background(), func(s State, h []CommandRecord) bool {
			return !s.PasscodePresent && len(h) == 1 && h[0].RequestType == "ProfileList"
		})
	}()
	dev.SetPasscodePresent(false)
	if _, _, err := dev.handle(commandPlist(t, "ProfileList", nil)); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("WaitFor did not see the change")
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := dev.WaitFor(ctx, func(s State, _ []CommandRecord) bool { return s.Erased }); !errors.Is(err, context.Canceled) {
		t.Errorf("WaitFor with a cancelled context: %v", err)
	}
}
