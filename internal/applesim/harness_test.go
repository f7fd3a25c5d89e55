package applesim

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/micromdm/nanolib/log"
	"github.com/micromdm/nanomdm/certverify"
	"github.com/micromdm/nanomdm/cryptoutil"
	httpmdm "github.com/micromdm/nanomdm/http/mdm"
	"github.com/micromdm/nanomdm/mdm"
	"github.com/micromdm/nanomdm/push/nanopush"
	pushsvc "github.com/micromdm/nanomdm/push/service"
	"github.com/micromdm/nanomdm/service"
	"github.com/micromdm/nanomdm/service/certauth"
	"github.com/micromdm/nanomdm/service/nanomdm"
	"github.com/micromdm/nanomdm/storage/inmem"
	"github.com/micromdm/plist"

	"github.com/halemdm/hale/internal/fakeapns"
	"github.com/halemdm/hale/internal/randid"
	"github.com/halemdm/hale/internal/testpki"
)

// capture is a service decorator that records every command result
// nanomdm receives, in the style of nanomdm's service chain.
type capture struct {
	service.CheckinAndCommandService
	mu        sync.Mutex
	results   map[string]*mdm.CommandResults
	idleCount int
	arrived   chan struct{}
}

// idles returns how many Idle reports (polls) nanomdm received.
func (c *capture) idles() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.idleCount
}

func (c *capture) CommandAndReportResults(r *mdm.Request, results *mdm.CommandResults) (*mdm.Command, error) {
	if results.Status == "Idle" {
		c.mu.Lock()
		c.idleCount++
		c.mu.Unlock()
	}
	if results.CommandUUID != "" {
		c.mu.Lock()
		cp := *results
		cp.Raw = append([]byte(nil), results.Raw...)
		c.results[results.CommandUUID] = &cp
		c.mu.Unlock()
		select {
		case c.arrived <- struct{}{}:
		default:
		}
	}
	return c.CheckinAndCommandService.CommandAndReportResults(r, results)
}

// harness is nanomdm (in-memory storage, certauth, certificate
// verification) behind real HTTPS, plus a push service whose provider
// talks to a fake APNs.
type harness struct {
	store  *inmem.InMem
	pusher *pushsvc.PushService
	apns   *fakeapns.Server
	server *httptest.Server
	cap    *capture
	ca     *testpki.CA
}

// newHarness starts the stack. With tlsAuth the identity comes from
// the TLS client certificate, otherwise from the Mdm-Signature header.
func newHarness(t *testing.T, tlsAuth bool) *harness {
	t.Helper()
	h := &harness{store: inmem.New(), ca: testpki.NewCA(t, "applesim test CA")}
	h.apns = fakeapns.New(fakeapns.WithTopic(DefaultTopic))
	t.Cleanup(h.apns.Close)

	certPEM, keyPEM, err := fakeapns.GeneratePushCert(DefaultTopic, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.store.StorePushCert(context.Background(), certPEM, keyPEM); err != nil {
		t.Fatal(err)
	}
	h.pusher = pushsvc.New(h.store, h.store, nanopush.NewFactory(nanopush.WithNewClient(h.apns.NewClient)), log.NopLogger)

	h.cap = &capture{
		CheckinAndCommandService: certauth.New(nanomdm.New(h.store, nanomdm.WithLogger(log.NopLogger)), h.store),
		results:                  make(map[string]*mdm.CommandResults),
		arrived:                  make(chan struct{}, 1),
	}
	verifier, err := certverify.NewPoolVerifier(h.ca.PEM, nil, x509.ExtKeyUsageClientAuth)
	if err != nil {
		t.Fatal(err)
	}
	var handler http.Handler = httpmdm.CheckinAndCommandHandler(h.cap, log.NopLogger)
	handler = httpmdm.CertVerifyMiddleware(handler, verifier, log.NopLogger)
	if tlsAuth {
		handler = httpmdm.CertExtractTLSMiddleware(handler, log.NopLogger)
	} else {
		handler = httpmdm.CertExtractMdmSignatureMiddleware(handler, httpmdm.MdmSignatureVerifierFunc(cryptoutil.VerifyMdmSignature))
	}
	mux := http.NewServeMux()
	mux.Handle("/mdm", handler)
	h.server = httptest.NewUnstartedServer(mux)
	h.server.TLS = &tls.Config{ClientAuth: tls.RequestClientCert}
	h.server.StartTLS()
	t.Cleanup(h.server.Close)
	return h
}

// newDevice makes a device with a CA-issued identity.
func (h *harness) newDevice(t *testing.T, opts ...Option) *Device {
	t.Helper()
	cert, key := h.ca.Issue(t, "device")
	all := append([]Option{WithHTTPClient(h.server.Client()), WithIdentity(cert, key)}, opts...)
	d, err := New(h.server.URL+"/mdm", all...)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// enqueue queues a command for udid the way an MDM server builds one:
// a plist with CommandUUID and a Command dictionary.
func (h *harness) enqueue(t *testing.T, udid, requestType string, fields map[string]any) string {
	t.Helper()
	cmdDict := map[string]any{"RequestType": requestType}
	for k, v := range fields {
		cmdDict[k] = v
	}
	uuid := randid.UUID()
	raw, err := plist.Marshal(map[string]any{"CommandUUID": uuid, "Command": cmdDict})
	if err != nil {
		t.Fatal(err)
	}
	cmd, err := mdm.DecodeCommand(raw)
	if err != nil {
		t.Fatal(err)
	}
	errs, err := h.store.EnqueueCommand(context.Background(), []string{udid}, cmd)
	if err != nil || len(errs) > 0 {
		t.Fatalf("enqueue %s: %v %v", requestType, err, errs)
	}
	return uuid
}

// push sends an APNs push to udid through nanomdm's push service.
func (h *harness) push(t *testing.T, udid string) {
	t.Helper()
	resp, err := h.pusher.Push(context.Background(), []string{udid})
	if err != nil {
		t.Fatal(err)
	}
	if r := resp[udid]; r == nil || r.Err != nil || r.Id == "" {
		t.Fatalf("push to %s: %+v", udid, r)
	}
}

// result waits for the result of command uuid to reach nanomdm.
func (h *harness) result(t *testing.T, uuid string) *mdm.CommandResults {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		h.cap.mu.Lock()
		r := h.cap.results[uuid]
		h.cap.mu.Unlock()
		if r != nil {
			return r
		}
		select {
		case <-h.cap.arrived:
		case <-time.After(20 * time.Millisecond):
		case <-deadline:
			t.Fatalf("no result for command %s", uuid)
		}
	}
}

// unmarshal decodes a result plist into v.
func unmarshal(t *testing.T, r *mdm.CommandResults, v any) {
	t.Helper()
	if err := plist.Unmarshal(r.Raw, v); err != nil {
		t.Fatalf("result of %s does not parse: %v\n%s", r.CommandUUID, err, r.Raw)
	}
}
