package applesim

import (
	"bytes"
	"errors"
	"fmt"
	"time"
)

// Status values of command results, exactly as Apple devices send them.
const (
	// StatusIdle is a poll that reports no command result.
	StatusIdle = "Idle"
	// StatusAcknowledged: the command ran.
	StatusAcknowledged = "Acknowledged"
	// StatusError: the command failed; ErrorChain says why.
	StatusError = "Error"
	// StatusNotNow: the device cannot run the command now (locked or
	// busy) and will poll again when it can.
	StatusNotNow = "NotNow"
	// StatusCommandFormatError: the command is malformed.
	StatusCommandFormatError = "CommandFormatError"
)

// runsWhileLocked are the commands Apple devices carry out while
// passcode-locked (before first unlock, or busy): Apple's protocol
// reference lists DeviceLock, EraseDevice, ClearPasscode and the
// inventory queries that need no protected data; Lost Mode exists for
// locked devices. InstallProfile and SecurityInfo are answered NotNow.
var runsWhileLocked = map[string]bool{
	"DeviceLock":               true,
	"EraseDevice":              true,
	"ClearPasscode":            true,
	"DeviceInformation":        true,
	"ProfileList":              true,
	"CertificateList":          true,
	"ProvisioningProfileList":  true,
	"InstalledApplicationList": true,
	"Restrictions":             true,
	"EnableLostMode":           true,
	"DisableLostMode":          true,
	"DeviceLocation":           true,
	"PlayLostModeSound":        true,
}

// RunsWhileLocked reports whether a device in NotNow mode still runs
// requestType instead of answering NotNow.
func RunsWhileLocked(requestType string) bool { return runsWhileLocked[requestType] }

// command is a decoded MDM command.
type command struct {
	UUID        string
	RequestType string
	Body        map[string]any // the Command dictionary
}

// decodeCommand parses a command as sent by the server. When the
// command is malformed but its CommandUUID could be read, the partial
// command is returned with the error so the device can answer
// CommandFormatError for it.
func decodeCommand(raw []byte) (*command, error) {
	top, err := decodeDict(raw, MaxResponseSize)
	if err != nil {
		return nil, err
	}
	uuid, ok := getString(top, "CommandUUID")
	if !ok || uuid == "" {
		return nil, errors.New("command has no CommandUUID string")
	}
	c := &command{UUID: uuid}
	body, ok := getDict(top, "Command")
	if !ok {
		return c, errors.New("command has no Command dictionary")
	}
	rt, ok := getString(body, "RequestType")
	if !ok || rt == "" {
		return c, errors.New("command has no RequestType string")
	}
	c.RequestType, c.Body = rt, body
	return c, nil
}

// result is the outcome of one command before it is encoded.
type result struct {
	status string
	chain  []ErrorChainItem
	fields map[string]any // command-specific response keys
	erase  bool           // erase after reporting
}

func ack(fields map[string]any) result { return result{status: StatusAcknowledged, fields: fields} }

func fail(domain string, code int, msg string) result {
	return result{status: StatusError, chain: []ErrorChainItem{{
		ErrorCode: code, ErrorDomain: domain, LocalizedDescription: msg, USEnglishDescription: msg,
	}}}
}

func formatError(msg string) result {
	r := fail(MDMErrorDomain, CodeMalformedCommand, msg)
	r.status = StatusCommandFormatError
	return r
}

// handle decodes and runs one command and returns the record of it,
// whose Response is the report to send, and whether the device must
// erase itself once the report is sent. An error means the command
// could not even be attributed to a CommandUUID.
func (d *Device) handle(raw []byte) (CommandRecord, bool, error) {
	c, err := decodeCommand(raw)
	var res result
	switch {
	case c == nil:
		return CommandRecord{}, false, fmt.Errorf("applesim: undecodable command from server: %w", err)
	case err != nil:
		c.RequestType = "(malformed)"
		res = formatError(err.Error())
	}

	d.mu.Lock()
	defer d.mu.Unlock()
	if err == nil {
		res = d.execute(c)
	}
	report := map[string]any{}
	for k, v := range res.fields {
		report[k] = v
	}
	report["CommandUUID"] = c.UUID
	report["Status"] = res.status
	d.ident(report)
	if len(res.chain) > 0 {
		report["ErrorChain"] = res.chain
	}
	body, encErr := encodePlist(report)
	if encErr != nil {
		return CommandRecord{}, false, fmt.Errorf("applesim: encoding result of %s %s: %w", c.RequestType, c.UUID, encErr)
	}
	rec := CommandRecord{
		CommandUUID: c.UUID,
		RequestType: c.RequestType,
		Status:      res.status,
		ErrorChain:  res.chain,
		Response:    body,
		Time:        time.Now(),
	}
	d.history = append(d.history, rec)
	d.notifyLocked()
	d.logger.Debug("command", "request_type", rec.RequestType, "command_uuid", rec.CommandUUID, "status", rec.Status)
	return rec, res.erase, nil
}

// execute runs c against the state; d.mu is held.
func (d *Device) execute(c *command) result {
	s := &d.state
	if s.NotNow && !RunsWhileLocked(c.RequestType) {
		return result{status: StatusNotNow}
	}
	switch c.RequestType {
	case "ProfileList":
		return d.profileList()
	case "InstallProfile":
		return d.installProfile(c)
	case "RemoveProfile":
		return d.removeProfile(c)
	case "SecurityInfo":
		return d.securityInfo()
	case "Restrictions":
		return d.restrictions()
	case "DeviceInformation":
		return d.deviceInformation(c)
	case "DeviceLock":
		return d.deviceLock(c)
	case "EnableLostMode", "DisableLostMode":
		return d.lostMode(c)
	case "EraseDevice":
		return d.eraseDevice(c)
	case "ClearPasscode":
		return d.clearPasscode(c)
	case "DeclarativeManagement":
		return d.declarativeManagement(c)
	case "Settings":
		return d.settings(c)
	}
	return fail(MDMErrorDomain, CodeUnknownCommand,
		fmt.Sprintf("The MDM command “%s” is not supported by this device.", c.RequestType))
}

func (d *Device) profileList() result {
	list := make([]any, 0, len(d.state.Profiles))
	for _, p := range d.state.Profiles {
		item := map[string]any{
			"PayloadIdentifier":        p.Identifier,
			"PayloadUUID":              p.UUID,
			"PayloadVersion":           p.Version,
			"PayloadRemovalDisallowed": p.RemovalDisallowed,
			"HasRemovalPasscode":       false,
			"IsEncrypted":              false,
		}
		setIf(item, "PayloadDisplayName", p.DisplayName)
		setIf(item, "PayloadDescription", p.Description)
		setIf(item, "PayloadOrganization", p.Organization)
		if d.state.platform() == IOS {
			// Every profile here came through MDM.
			item["IsManaged"] = true
		}
		if p.Signed {
			certs := make([]any, len(p.SignerCertificates))
			for i, c := range p.SignerCertificates {
				certs[i] = bytes.Clone(c)
			}
			item["SignerCertificates"] = certs
		}
		content := make([]any, len(p.Payloads))
		for i, pl := range p.Payloads {
			entry := map[string]any{
				"PayloadType":       pl.Type,
				"PayloadVersion":    pl.Version,
				"PayloadIdentifier": pl.Identifier,
				"PayloadUUID":       pl.UUID,
			}
			setIf(entry, "PayloadDisplayName", pl.DisplayName)
			if desc, ok := getString(pl.Content, "PayloadDescription"); ok {
				setIf(entry, "PayloadDescription", desc)
			}
			if org, ok := getString(pl.Content, "PayloadOrganization"); ok {
				setIf(entry, "PayloadOrganization", org)
			}
			content[i] = entry
		}
		item["PayloadContent"] = content
		list = append(list, item)
	}
	return ack(map[string]any{"ProfileList": list})
}

func (d *Device) installProfile(c *command) result {
	payload, ok := getData(c.Body, "Payload")
	if !ok || len(payload) == 0 {
		return formatError("InstallProfile needs Payload data")
	}
	p, err := ParseProfile(payload)
	if err != nil {
		var pe *ProfileError
		if errors.As(err, &pe) {
			return fail(ProfileErrorDomain, pe.Code, pe.Error())
		}
		return fail(ProfileErrorDomain, CodeMalformedProfile, err.Error())
	}
	for _, pl := range p.Payloads {
		if pl.Type == "com.apple.mdm" {
			return fail(ProfileErrorDomain, CodeInvalidField, "an MDM payload cannot be installed through MDM")
		}
	}
	// Installing a profile whose identifier is already installed
	// replaces it, as on a device.
	for i := range d.state.Profiles {
		if d.state.Profiles[i].Identifier == p.Identifier {
			d.state.Profiles[i] = *p
			return ack(nil)
		}
	}
	d.state.Profiles = append(d.state.Profiles, *p)
	return ack(nil)
}

func (d *Device) removeProfile(c *command) result {
	id, ok := getString(c.Body, "Identifier")
	if !ok || id == "" {
		return formatError("RemoveProfile needs an Identifier string")
	}
	if d.userEnrollment && id == d.mdmProfileID {
		// Removing the enrollment profile ends a user enrollment: the
		// device acknowledges, then deletes the managed volume (managed
		// apps, their data, the profiles and declarations) and checks out.
		d.unenrollAfter = true
		return ack(nil)
	}
	for i, p := range d.state.Profiles {
		if p.Identifier == id {
			d.state.Profiles = append(d.state.Profiles[:i:i], d.state.Profiles[i+1:]...)
			return ack(nil)
		}
	}
	return fail(ProfileErrorDomain, CodeProfileNotFound, fmt.Sprintf("The profile “%s” is not installed.", id))
}

func (d *Device) securityInfo() result {
	s := &d.state
	var info map[string]any
	if s.platform() == MacOS {
		info = map[string]any{
			"FDE_Enabled":                      s.FileVaultEnabled,
			"FDE_HasPersonalRecoveryKey":       s.FileVaultEnabled && s.FileVaultPersonalRecoveryKey,
			"FDE_HasInstitutionalRecoveryKey":  false,
			"SystemIntegrityProtectionEnabled": s.SIPEnabled,
			"AuthenticatedRootVolumeEnabled":   s.AuthenticatedRootVolume,
			"FirewallSettings": map[string]any{
				"FirewallEnabled":  s.FirewallEnabled,
				"BlockAllIncoming": false,
				"StealthMode":      false,
			},
			"ManagementStatus": map[string]any{
				"EnrolledViaDEP":             s.EnrolledViaDEP,
				"UserApprovedEnrollment":     s.UserApprovedEnrollment,
				"IsUserEnrollment":           false,
				"IsActivationLockManageable": s.EnrolledViaDEP,
			},
		}
	} else {
		info = map[string]any{
			"HardwareEncryptionCaps":        s.HardwareEncryptionCaps,
			"PasscodePresent":               s.PasscodePresent,
			"PasscodeCompliant":             s.PasscodeCompliant(),
			"PasscodeCompliantWithProfiles": s.PasscodeCompliantWithProfiles(),
			"ManagementStatus": map[string]any{
				"IsUserEnrollment": d.userEnrollment,
			},
		}
	}
	return ack(map[string]any{"SecurityInfo": info})
}

// deviceQueries returns every DeviceInformation query the simulator
// answers, with its current answer.
func (d *Device) deviceQueries() map[string]any {
	s := &d.state
	q := map[string]any{
		"UDID":                    d.udid,
		"SerialNumber":            d.serial,
		"DeviceName":              s.DeviceName,
		"OSVersion":               s.OSVersion,
		"BuildVersion":            s.BuildVersion,
		"ProductName":             s.ProductName,
		"Model":                   s.Model,
		"ModelName":               s.ModelName,
		"IsSupervised":            s.Supervised,
		"IsActivationLockEnabled": s.ActivationLockEnabled,
	}
	if d.userEnrollment {
		// A user enrollment keeps the hardware and the person's device private.
		delete(q, "UDID")
		delete(q, "SerialNumber")
		delete(q, "DeviceName")
		delete(q, "IsActivationLockEnabled")
	}
	if s.platform() == IOS {
		q["IsCloudBackupEnabled"] = s.CloudBackupEnabled
		q["IsMDMLostModeEnabled"] = s.LostMode
	}
	return q
}

func (d *Device) deviceInformation(c *command) result {
	all := d.deviceQueries()
	answers := map[string]any{}
	if present(c.Body, "Queries") {
		queries, ok := getArray(c.Body, "Queries")
		if !ok {
			return formatError("DeviceInformation Queries must be an array of strings")
		}
		for _, q := range queries {
			name, ok := q.(string)
			if !ok {
				return formatError("DeviceInformation Queries must be an array of strings")
			}
			// Devices leave out queries they do not know.
			if v, known := all[name]; known {
				answers[name] = v
			}
		}
	} else {
		answers = all
	}
	return ack(map[string]any{"QueryResponses": answers})
}

func (d *Device) deviceLock(c *command) result {
	s := &d.state
	pin, hasPIN := getString(c.Body, "PIN")
	if present(c.Body, "PIN") && (!hasPIN || !sixDigits(pin)) {
		return formatError("DeviceLock PIN must be six digits")
	}
	msg, _ := getString(c.Body, "Message")
	phone, _ := getString(c.Body, "PhoneNumber")
	var fields map[string]any
	if msg != "" || phone != "" {
		outcome := "Success"
		switch {
		case s.LostMode:
			outcome = "DeviceInLostMode"
		case s.platform() == IOS && !s.PasscodePresent:
			outcome = "NoPasscodeSet"
		}
		fields = map[string]any{"MessageResult": outcome}
	}
	s.Locked = true
	s.LockMessage = msg
	if s.platform() == MacOS {
		s.LockPIN = pin
	}
	return ack(fields)
}

func (d *Device) lostMode(c *command) result {
	s := &d.state
	if s.platform() != IOS {
		return fail(MDMErrorDomain, CodeUnsupported, c.RequestType+" is only supported on iOS and iPadOS.")
	}
	if !s.Supervised {
		return fail(MDMErrorDomain, CodeRequiresSupervised, c.RequestType+" requires a supervised device.")
	}
	if c.RequestType == "DisableLostMode" {
		s.LostMode = false
		s.LostModeMessage, s.LostModePhone, s.LostModeFootnote = "", "", ""
		return ack(nil)
	}
	msg, _ := getString(c.Body, "Message")
	phone, _ := getString(c.Body, "PhoneNumber")
	if msg == "" && phone == "" {
		return formatError("EnableLostMode needs a Message or a PhoneNumber")
	}
	s.LostMode, s.Locked = true, true
	s.LostModeMessage, s.LostModePhone = msg, phone
	s.LostModeFootnote, _ = getString(c.Body, "Footnote")
	return ack(nil)
}

func (d *Device) eraseDevice(c *command) result {
	pin, hasPIN := getString(c.Body, "PIN")
	if present(c.Body, "PIN") && (!hasPIN || !sixDigits(pin)) {
		return formatError("EraseDevice PIN must be six digits")
	}
	if d.state.platform() == MacOS {
		d.state.ErasePIN = pin
	}
	r := ack(nil)
	r.erase = true
	return r
}

func (d *Device) clearPasscode(c *command) result {
	if d.state.platform() != IOS {
		return fail(MDMErrorDomain, CodeUnsupported, "ClearPasscode is only supported on iOS and iPadOS.")
	}
	tok, ok := getData(c.Body, "UnlockToken")
	if !ok || len(tok) == 0 {
		return formatError("ClearPasscode needs UnlockToken data")
	}
	if !bytes.Equal(tok, d.unlockToken) {
		return fail(MDMErrorDomain, CodeInvalidUnlockToken, "The unlock token is invalid.")
	}
	d.state.PasscodePresent = false
	d.state.PasscodeLength, d.state.PasscodeAlphanumeric, d.state.PasscodeSimple = 0, false, false
	return ack(nil)
}

// eraseState is what survives an erase: the hardware and OS, not the
// data, profiles, passcode or lock.
func eraseState(s *State) {
	*s = State{
		Platform:               s.Platform,
		DeviceName:             s.DeviceName,
		OSVersion:              s.OSVersion,
		BuildVersion:           s.BuildVersion,
		ProductName:            s.ProductName,
		Model:                  s.Model,
		ModelName:              s.ModelName,
		HardwareEncryptionCaps: s.HardwareEncryptionCaps,
		SIPEnabled:             s.SIPEnabled,
		ErasePIN:               s.ErasePIN,
		Erased:                 true,
	}
}

func sixDigits(s string) bool {
	if len(s) != 6 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func setIf(m map[string]any, key, value string) {
	if value != "" {
		m[key] = value
	}
}
