package applesim

// The user's side of a simulated device: what a test changes on it as a person would.

// SetPasscodePresent sets or removes the passcode. A new passcode
// without a known length is taken to be six digits, not simple.
func (d *Device) SetPasscodePresent(present bool) {
	d.Update(func(s *State) {
		s.PasscodePresent = present
		if present && s.PasscodeLength == 0 {
			s.PasscodeLength = 6
		}
	})
}

// SetPasscode sets a passcode of the given length and quality.
func (d *Device) SetPasscode(length int, alphanumeric, simple bool) {
	d.Update(func(s *State) {
		s.PasscodePresent = length > 0
		s.PasscodeLength, s.PasscodeAlphanumeric, s.PasscodeSimple = length, alphanumeric, simple
	})
}

// SetNotNow switches the device between busy/locked (answering NotNow
// to what a locked device does not run) and available.
func (d *Device) SetNotNow(notNow bool) { d.Update(func(s *State) { s.NotNow = notNow }) }

// SetFileVaultEnabled turns FileVault on or off (macOS).
func (d *Device) SetFileVaultEnabled(on bool) { d.Update(func(s *State) { s.FileVaultEnabled = on }) }

// SetSupervised sets whether the device is supervised.
func (d *Device) SetSupervised(on bool) { d.Update(func(s *State) { s.Supervised = on }) }

// SetOSVersion sets the OS version and build.
func (d *Device) SetOSVersion(version, build string) {
	d.Update(func(s *State) { s.OSVersion, s.BuildVersion = version, build })
}

// Unlock is the user unlocking the device after DeviceLock.
func (d *Device) Unlock() { d.Update(func(s *State) { s.Locked = false }) }
