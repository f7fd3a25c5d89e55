package api

import "time"

// CommandRequest is the body of POST /api/v1/devices/{id}/commands: a read-only MDM query for an
// Apple device. Lock, lost mode and wipe have routes of their own.
type CommandRequest struct {
	// RequestType is SecurityInfo, DeviceInformation, ProfileList, Restrictions,
	// CertificateList or InstalledApplicationList.
	RequestType string `json:"request_type"`
	// Queries are what a DeviceInformation asks; empty asks what Hale uses.
	Queries []string `json:"queries,omitempty"`
}

// AppleCommand is an MDM command sent to an Apple device and where it is in its life: the answer
// to POST /api/v1/devices/{id}/commands and an entry of the device's command list.
type AppleCommand struct {
	CommandID    string `json:"command_id"`
	EnrollmentID string `json:"enrollment_id"`
	RequestType  string `json:"request_type"`
	// State is queued, pushed, not_now, acknowledged, error, expired or cancelled.
	State       string    `json:"state"`
	RequestedBy string    `json:"requested_by,omitempty"`
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
	PushedAt    time.Time `json:"pushed_at,omitzero"`
	AnsweredAt  time.Time `json:"answered_at,omitzero"`
	// PushError is why the last push to the device failed, if it did.
	PushError  string       `json:"push_error,omitempty"`
	ErrorChain []ErrorChain `json:"error_chain,omitempty"`
	// Detail says why a command ended without an answer (cancelled or expired).
	Detail string `json:"detail,omitempty"`
}

// AppleCommands is GET /api/v1/devices/{id}/commands for an Apple device.
type AppleCommands struct {
	Commands []AppleCommand `json:"commands"`
}

// AppleCommandWithResult is GET /api/v1/devices/{id}/commands/{uuid} for an Apple device: the
// command and, once the device answered, its result.
type AppleCommandWithResult struct {
	AppleCommand
	Result *AppleCommandResult `json:"result,omitempty"`
}

// ErrorChain is one entry of the ErrorChain an Apple device sends with an error, under Apple's
// own key names.
type ErrorChain struct {
	ErrorCode            int    `json:"ErrorCode"`
	ErrorDomain          string `json:"ErrorDomain"`
	LocalizedDescription string `json:"LocalizedDescription"`
	USEnglishDescription string `json:"USEnglishDescription"`
}

// AppleCommandResult is an Apple device's answer to a command, parsed where Hale uses it.
type AppleCommandResult struct {
	EnrollmentID string `json:"enrollment_id"`
	CommandID    string `json:"command_id"`
	RequestType  string `json:"request_type,omitempty"`
	// Status is Apple's: Acknowledged, Error, CommandFormatError or NotNow.
	Status     string       `json:"status"`
	ReceivedAt time.Time    `json:"received_at"`
	ErrorChain []ErrorChain `json:"error_chain,omitempty"`

	SecurityInfo      *SecurityInfo      `json:"security_info,omitempty"`
	DeviceInformation *DeviceInformation `json:"device_information,omitempty"`
	ProfileList       []InstalledProfile `json:"profile_list,omitempty"`
	// Restrictions are the boolean restrictions in force (a Restrictions answer), by key.
	Restrictions map[string]bool `json:"restrictions,omitempty"`
}

// SecurityInfo is the part of a SecurityInfo answer Hale uses; a key the device did not send is
// nil.
type SecurityInfo struct {
	HardwareEncryptionCaps        *int  `json:"hardware_encryption_caps,omitempty"`
	PasscodePresent               *bool `json:"passcode_present,omitempty"`
	PasscodeCompliant             *bool `json:"passcode_compliant,omitempty"`
	PasscodeCompliantWithProfiles *bool `json:"passcode_compliant_with_profiles,omitempty"`
	// FDEEnabled (FileVault), SIPEnabled and Firewall are macOS only.
	FDEEnabled *bool             `json:"fde_enabled,omitempty"`
	SIPEnabled *bool             `json:"sip_enabled,omitempty"`
	Firewall   *FirewallSettings `json:"firewall,omitempty"`
}

// FirewallSettings is a Mac's application firewall as SecurityInfo reports it.
type FirewallSettings struct {
	FirewallEnabled bool `json:"firewall_enabled"`
}

// DeviceInformation is the part of a DeviceInformation answer Hale uses.
type DeviceInformation struct {
	UDID         string `json:"udid,omitempty"`
	SerialNumber string `json:"serial_number,omitempty"`
	DeviceName   string `json:"device_name,omitempty"`
	Model        string `json:"model,omitempty"`
	ModelName    string `json:"model_name,omitempty"`
	ProductName  string `json:"product_name,omitempty"`
	OSVersion    string `json:"os_version,omitempty"`
	BuildVersion string `json:"build_version,omitempty"`
	IsSupervised *bool  `json:"is_supervised,omitempty"`
}

// InstalledProfile is one entry of a ProfileList answer.
type InstalledProfile struct {
	Identifier  string `json:"identifier"`
	UUID        string `json:"uuid"`
	DisplayName string `json:"display_name,omitempty"`
	IsManaged   bool   `json:"is_managed"`
}

// AgentCommand is a command for an agent (lock, wipe), in the shape the agent receives it, with
// its result once reported: what GET /agent/v1/commands hands the agent, and what the admin
// API's command routes show for an agent's device.
type AgentCommand struct {
	ID       string `json:"id"`
	DeviceID string `json:"device_id"`
	// Type is lock or wipe.
	Type string `json:"type"`
	// Mode is a wipe's: selective (agents wipe selectively only).
	Mode     string    `json:"mode,omitempty"`
	Reason   string    `json:"reason,omitempty"`
	IssuedAt time.Time `json:"issued_at"`
	IssuedBy string    `json:"issued_by,omitempty"`
	// ManagedData is what a selective wipe removes.
	ManagedData []string `json:"managed_data,omitempty"`

	// State is queued, delivered, acknowledged, partial or error.
	State       string              `json:"state"`
	DeliveredAt time.Time           `json:"delivered_at,omitzero"`
	FinishedAt  time.Time           `json:"finished_at,omitzero"`
	Result      *AgentCommandResult `json:"result,omitempty"`
}

// AgentCommands is a list of an agent's commands: the answer to GET /agent/v1/commands, and to
// GET /api/v1/devices/{id}/commands for an agent's device.
type AgentCommands struct {
	Commands []AgentCommand `json:"commands"`
}

// AgentCommandResult is what an agent reports for a command (the body of POST
// /agent/v1/commands/{id}/result), and what the admin API shows of it.
type AgentCommandResult struct {
	// Status is done, partial (a wipe that left managed data behind) or failed.
	Status string `json:"status"`
	Detail string `json:"detail,omitempty"`
	// Removed lists the paths a wipe removed, from agents older than Paths.
	Removed    []string     `json:"removed,omitempty"`
	Paths      []PathResult `json:"paths,omitempty"`
	FinishedAt time.Time    `json:"finished_at,omitzero"`
}

// PathResult is what a selective wipe did with one managed data path.
type PathResult struct {
	// Path is on the device, "~/" expanded per user.
	Path string `json:"path"`
	// Managed is the policy's entry, when it differs from Path.
	Managed string `json:"managed,omitempty"`
	// Outcome is removed, absent, refused or failed.
	Outcome string `json:"outcome"`
	Reason  string `json:"reason,omitempty"`
}
