package servertest

import (
	"context"
	"crypto/tls"
	"net/http"
	"time"

	"github.com/halemdm/hale/internal/applesim"
	"github.com/halemdm/hale/internal/fakeapns"
	"github.com/halemdm/hale/mdmserver/commands"
)

// Topic is the APNs topic of the push certificate UploadPushCert installs, and the topic the
// simulated devices of EnrollDevice check in with.
const Topic = "com.apple.mgmt.External.3b5e5b2c-8f1a-4d0e-9c55-hale-test"

// UploadPushCert installs a push certificate for Topic, made for the fake APNs, so that the
// server pushes to its devices. Without one, commands wait for the device's next poll.
func (s *Server) UploadPushCert() {
	s.T.Helper()
	certPEM, keyPEM, err := fakeapns.GeneratePushCert(Topic, 24*time.Hour)
	if err != nil {
		s.T.Fatal(err)
	}
	var info struct{ Topic string }
	if code := s.Do("PUT", "/api/v1/pushcert", s.Admin, append(certPEM, keyPEM...), &info); code != 200 || info.Topic != Topic {
		s.T.Fatalf("upload push cert: %d %+v", code, info)
	}
}

// DeviceClient is an HTTP client that trusts the server, for simulated devices: unchecked
// against the OpenAPI document, since /mdm and SCEP are Apple's protocols.
func (s *Server) DeviceClient() *http.Client {
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: s.RootCAs()}}}
}

// NewDevice makes an enrolled simulated Apple device whose identity DeviceCA issued, and runs
// its push loop until the test ends: it answers every command the server pushes.
func (s *Server) NewDevice(opts ...applesim.Option) *applesim.Device {
	s.T.Helper()
	dev := s.EnrollDevice(opts...)
	ctx, cancel := context.WithCancel(context.Background())
	s.T.Cleanup(cancel)
	go func() { _ = dev.RunPushLoop(ctx, s.APNs) }()
	return dev
}

// EnrollDevice is NewDevice without the push loop: the device polls only when the test says.
func (s *Server) EnrollDevice(opts ...applesim.Option) *applesim.Device {
	s.T.Helper()
	cert, key := s.DeviceCA.Issue(s.T, "sim device")
	all := append([]applesim.Option{applesim.WithHTTPClient(s.DeviceClient()), applesim.WithIdentity(cert, key),
		applesim.WithTopic(Topic), applesim.WithLogger(Logger())}, opts...)
	dev, err := applesim.New(s.URL+"/mdm", all...)
	if err != nil {
		s.T.Fatal(err)
	}
	if err := dev.Enroll(context.Background()); err != nil {
		s.T.Fatalf("enroll: %v", err)
	}
	return dev
}

// CommandStatus is an Apple command as the API answers for it: its record and, once the device
// answered, its parsed result.
type CommandStatus struct {
	commands.Record
	Result *commands.Result `json:"result"`
}

// WaitCommand polls an Apple command of the device until its state is final, and fails the
// test if it is not within 15 seconds.
func (s *Server) WaitCommand(deviceID, uuid string) CommandStatus {
	s.T.Helper()
	var rec CommandStatus
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		s.Do("GET", "/api/v1/devices/"+deviceID+"/commands/"+uuid, s.Admin, nil, &rec)
		if rec.State.Final() {
			return rec
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.T.Fatalf("command %s never finished: %+v", uuid, rec.Record)
	return rec
}
