// Package applesim simulates an Apple device (iPhone or Mac) that
// speaks the real MDM protocol to an MDM server over HTTP(S), for
// tests.
//
// A [Device] enrolls with Authenticate and TokenUpdate check-ins,
// authenticates every request with its identity certificate (an
// Mdm-Signature header, or the TLS client certificate), polls the
// server, runs the commands it is sent against its [State] and reports
// results shaped as Apple's device management schema describes
// (SecurityInfo, DeviceInformation, ProfileList, InstallProfile,
// RemoveProfile, DeviceLock, Lost Mode, EraseDevice, ClearPasscode).
// Unknown commands are answered with Error, and a device switched to
// NotNow answers NotNow to what a locked device would not run.
//
// Pushes arrive through [Device.RunPushLoop] from a fake APNs such as
// internal/fakeapns, so a test can exercise the whole loop: the server
// enqueues a command, pushes, the device polls and reports.
//
//	apns := fakeapns.New()
//	defer apns.Close()
//	dev, err := applesim.New(mdmURL, applesim.WithHTTPClient(client), applesim.WithIdentity(cert, key))
//	err = dev.Enroll(ctx)
//	go dev.RunPushLoop(ctx, apns)
//	// ... enqueue a command and push: the device polls by itself.
//
// [ParseEnrollmentProfile] reads an enrollment profile as a device
// does, and its Options configure a device from it. [Device.WaitFor]
// waits for the effect of commands that arrive through the push loop.
//
// The transport is nanomdm's test/protocol; the default identity is a
// random self-signed certificate like nanomdm's test enrollments, which
// a server verifying identities against its CA refuses: pass a
// CA-issued one with [WithIdentity].
package applesim
