package fakeapns

import (
	"context"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/micromdm/nanomdm/mdm"
	"github.com/micromdm/nanomdm/push/nanopush"
)

const testTopic = "com.apple.mgmt.External.7ab6fbd1-1ab5-4c3b-93d2-4b2a6e0d6b71"

func pushCert(t *testing.T, topic string) *tls.Certificate {
	t.Helper()
	certPEM, keyPEM, err := GeneratePushCert(topic, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return &c
}

func mdmPush(t *testing.T, token, magic string) *mdm.Push {
	t.Helper()
	p := &mdm.Push{PushMagic: magic, Topic: testTopic}
	if err := p.SetTokenString(token); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestNanopushThroughFake(t *testing.T) {
	srv := New(WithTopic(testTopic))
	defer srv.Close()

	const token = "c2732227a1d8021cfaf781d71fb2f908c61f5861079a00954a5453f1d0281433"
	ch, cancel := srv.Subscribe(strings.ToUpper(token))
	defer cancel()

	prov, err := nanopush.NewFactory(nanopush.WithNewClient(srv.NewClient), nanopush.WithExpiration(time.Hour)).
		NewPushProvider(pushCert(t, testTopic))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := prov.Push(context.Background(), []*mdm.Push{mdmPush(t, token, "MAGIC-1")})
	if err != nil {
		t.Fatal(err)
	}
	r := resp[token]
	if r == nil || r.Err != nil || !validUUID(r.Id) {
		t.Fatalf("push response: %+v", r)
	}

	select {
	case p := <-ch:
		if p.Token != token || p.PushMagic != "MAGIC-1" || p.Topic != testTopic || p.ID != r.Id || p.Expiration == "" {
			t.Errorf("subscribed push: %+v", p)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no push delivered to subscriber")
	}
	if got := srv.PushesFor(token); len(got) != 1 || string(got[0].Body) != `{"mdm":"MAGIC-1"}` {
		t.Errorf("PushesFor: %+v", got)
	}

	// Unregistered tokens answer 410 with a timestamp, and are not recorded.
	srv.MarkUnregistered(token)
	resp, err = prov.Push(context.Background(), []*mdm.Push{mdmPush(t, token, "MAGIC-2")})
	if err != nil {
		t.Fatal(err)
	}
	var jerr *nanopush.JSONPushError
	if r := resp[token]; r == nil || !errors.As(r.Err, &jerr) || jerr.Reason != ReasonUnregistered || jerr.Timestamp == 0 {
		t.Fatalf("unregistered push: %+v", resp[token])
	}
	if n := len(srv.Pushes()); n != 1 {
		t.Errorf("recorded %d pushes, want 1", n)
	}
	srv.ClearTokenError(token)

	// A push certificate for another topic is refused with 403.
	other, err := nanopush.NewFactory(nanopush.WithNewClient(srv.NewClient)).
		NewPushProvider(pushCert(t, "com.apple.mgmt.External.other"))
	if err != nil {
		t.Fatal(err)
	}
	resp, _ = other.Push(context.Background(), []*mdm.Push{mdmPush(t, token, "MAGIC-3")})
	if r := resp[token]; r == nil || !errors.As(r.Err, &jerr) || jerr.Reason != ReasonBadCertificate || !strings.Contains(r.Err.Error(), "403") {
		t.Fatalf("wrong-topic push: %+v", resp[token])
	}
}

func TestProtocolErrors(t *testing.T) {
	srv := New(WithTopic(testTopic))
	defer srv.Close()
	client, err := srv.NewClient(pushCert(t, testTopic))
	if err != nil {
		t.Fatal(err)
	}
	token := hex.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))
	cases := []struct {
		name    string
		method  string
		path    string
		headers map[string]string
		body    string
		status  int
		reason  string
	}{
		{"ok", "POST", "/3/device/" + token, map[string]string{"apns-push-type": "mdm"}, `{"mdm":"x"}`, 200, ""},
		{"bad token", "POST", "/3/device/zz" + token[2:], nil, `{"mdm":"x"}`, 400, ReasonBadDeviceToken},
		{"missing token", "POST", "/3/device/", nil, `{"mdm":"x"}`, 400, ReasonMissingDeviceToken},
		{"bad path", "POST", "/2/device/" + token, nil, `{"mdm":"x"}`, 404, ReasonBadPath},
		{"get", "GET", "/3/device/" + token, nil, "", 405, ReasonMethodNotAllowed},
		{"wrong topic header", "POST", "/3/device/" + token, map[string]string{"apns-topic": "com.apple.mgmt.nope"}, `{"mdm":"x"}`, 400, ReasonTopicDisallowed},
		{"push type", "POST", "/3/device/" + token, map[string]string{"apns-push-type": "bogus"}, `{"mdm":"x"}`, 400, ReasonInvalidPushType},
		{"expiration", "POST", "/3/device/" + token, map[string]string{"apns-expiration": "soon"}, `{"mdm":"x"}`, 400, ReasonBadExpirationDate},
		{"priority", "POST", "/3/device/" + token, map[string]string{"apns-priority": "7"}, `{"mdm":"x"}`, 400, ReasonBadPriority},
		{"apns-id", "POST", "/3/device/" + token, map[string]string{"apns-id": "not-a-uuid"}, `{"mdm":"x"}`, 400, ReasonBadMessageID},
		{"empty", "POST", "/3/device/" + token, nil, ``, 400, ReasonPayloadEmpty},
		{"not json", "POST", "/3/device/" + token, nil, `{mdm`, 400, ReasonBadPayload},
		{"empty magic", "POST", "/3/device/" + token, nil, `{"mdm":""}`, 400, ReasonBadPayload},
		{"too large", "POST", "/3/device/" + token, nil, `{"mdm":"` + strings.Repeat("a", MaxPayloadSize) + `"}`, 413, ReasonPayloadTooLarge},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(tc.method, nanopush.Production+tc.path, strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range tc.headers {
				req.Header.Set(k, v)
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.ProtoMajor != 2 {
				t.Errorf("protocol %s, want HTTP/2", resp.Proto)
			}
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
			if !validUUID(resp.Header.Get("apns-id")) {
				t.Errorf("apns-id %q", resp.Header.Get("apns-id"))
			}
			if tc.reason != "" {
				var body struct{ Reason string }
				if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || body.Reason != tc.reason {
					t.Errorf("reason %q (%v), want %q", body.Reason, err, tc.reason)
				}
			}
		})
	}
	if n := len(srv.Pushes()); n != 1 {
		t.Errorf("recorded %d pushes, want only the valid one", n)
	}
}

func TestRefusesWithoutClientCertOrHTTP1(t *testing.T) {
	srv := New()
	defer srv.Close()
	resp, err := srv.Client().Post(srv.URL()+"/3/device/abcd", "application/json", strings.NewReader(`{"mdm":"x"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("no credentials: status %d, want 403", resp.StatusCode)
	}

	// An HTTP/1.1 client is refused: Go's TLS stack lets a client that
	// offers only http/1.1 through the handshake, so the handler answers.
	h1 := &http.Client{Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: srv.CertPool(), NextProtos: []string{"http/1.1"}},
	}}
	if resp, err := h1.Post(srv.URL()+"/3/device/abcd", "application/json", strings.NewReader(`{"mdm":"x"}`)); err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusHTTPVersionNotSupported {
			t.Errorf("HTTP/1.1 request: status %d, want 505", resp.StatusCode)
		}
	}
}

func TestSubscribeCancelAndClose(t *testing.T) {
	srv := New()
	ch1, cancel1 := srv.Subscribe("ab")
	ch2, _ := srv.Subscribe("ab")
	cancel1()
	cancel1() // idempotent
	if _, ok := <-ch1; ok {
		t.Error("cancelled channel still open")
	}
	srv.Close()
	if _, ok := <-ch2; ok {
		t.Error("channel still open after Close")
	}
	ch3, cancel3 := srv.Subscribe("ab")
	cancel3()
	if _, ok := <-ch3; ok {
		t.Error("subscription after Close is open")
	}
}

func TestGeneratePushCert(t *testing.T) {
	if _, _, err := GeneratePushCert("com.example.not-apple", time.Hour); err == nil {
		t.Error("accepted a topic without the com.apple.mgmt. prefix")
	}
	if _, _, err := GeneratePushCert(testTopic, 0); err == nil {
		t.Error("accepted zero validity")
	}
}
