package mdmserver_test

import (
	"testing"

	"github.com/halemdm/hale/internal/applesim"
	"github.com/halemdm/hale/internal/servertest"
	"github.com/halemdm/hale/mdmserver"
	"github.com/halemdm/hale/mdmserver/applemdm"
)

// testTopic is the APNs topic of the push certificate uploadPushCert installs.
const testTopic = servertest.Topic

// maxMDMBody is the largest MDM message /mdm reads.
const maxMDMBody = applemdm.MaxMessageBytes

// testEnv is a real server on a loopback port with a fake APNs and a test CA for device
// identities: a servertest.Server, with the helpers of this package's tests as methods.
type testEnv struct {
	*servertest.Server
	t *testing.T
}

func newTestEnv(t *testing.T, mutate ...func(*mdmserver.Config)) *testEnv {
	t.Helper()
	return newTestEnvWith(t, nil, mutate...)
}

// newTestEnvWith is newTestEnv with server options, such as WithClock.
func newTestEnvWith(t *testing.T, opts []mdmserver.Option, mutate ...func(*mdmserver.Config)) *testEnv {
	t.Helper()
	return &testEnv{Server: servertest.StartWith(t, opts, mutate...), t: t}
}

// call sends an API request and decodes a JSON answer into out (when not nil).
func (env *testEnv) call(method, path, token string, body []byte, out any) int {
	env.t.Helper()
	return env.Do(method, path, token, body, out)
}

func (env *testEnv) uploadPushCert() {
	env.t.Helper()
	env.UploadPushCert()
}

// newDevice makes an enrolled simulated Apple device whose identity the test CA issued, and runs
// its push loop until the test ends.
func (env *testEnv) newDevice(opts ...applesim.Option) *applesim.Device {
	env.t.Helper()
	return env.NewDevice(opts...)
}

// enrollDevice is newDevice without the push loop: the device polls only when the test says.
func (env *testEnv) enrollDevice(opts ...applesim.Option) *applesim.Device {
	env.t.Helper()
	return env.EnrollDevice(opts...)
}

// waitCommand polls the command until its state is final.
func (env *testEnv) waitCommand(deviceID, uuid string) servertest.CommandStatus {
	env.t.Helper()
	return env.WaitCommand(deviceID, uuid)
}
