package commands

import (
	"fmt"

	"github.com/micromdm/plist"
)

// SecurityInfo is the part of Apple's SecurityInfo response that posture needs. Optional fields
// are pointers: absent is unknown, not false.
type SecurityInfo struct {
	HardwareEncryptionCaps        *int  `json:"hardware_encryption_caps,omitempty" plist:",omitempty"`
	PasscodePresent               *bool `json:"passcode_present,omitempty" plist:",omitempty"`
	PasscodeCompliant             *bool `json:"passcode_compliant,omitempty" plist:",omitempty"`
	PasscodeCompliantWithProfiles *bool `json:"passcode_compliant_with_profiles,omitempty" plist:",omitempty"`
	// macOS
	FDEEnabled                       *bool `json:"fde_enabled,omitempty" plist:"FDE_Enabled,omitempty"`
	SystemIntegrityProtectionEnabled *bool `json:"sip_enabled,omitempty" plist:",omitempty"`
	FirewallSettings                 *struct {
		FirewallEnabled bool `json:"firewall_enabled"`
	} `json:"firewall,omitempty" plist:",omitempty"`
}

// DeviceInformation is the subset of DeviceInformation QueryResponses Hale uses.
type DeviceInformation struct {
	UDID         string `json:"udid,omitempty" plist:",omitempty"`
	SerialNumber string `json:"serial_number,omitempty" plist:",omitempty"`
	DeviceName   string `json:"device_name,omitempty" plist:",omitempty"`
	Model        string `json:"model,omitempty" plist:",omitempty"`
	ModelName    string `json:"model_name,omitempty" plist:",omitempty"`
	ProductName  string `json:"product_name,omitempty" plist:",omitempty"`
	OSVersion    string `json:"os_version,omitempty" plist:",omitempty"`
	BuildVersion string `json:"build_version,omitempty" plist:",omitempty"`
	IsSupervised *bool  `json:"is_supervised,omitempty" plist:",omitempty"`
}

// Profile is one entry of a ProfileList response.
type Profile struct {
	Identifier  string `json:"identifier" plist:"PayloadIdentifier"`
	UUID        string `json:"uuid" plist:"PayloadUUID"`
	DisplayName string `json:"display_name,omitempty" plist:"PayloadDisplayName,omitempty"`
	IsManaged   bool   `json:"is_managed" plist:",omitempty"`
}

// globalRestrictions is the part of a Restrictions answer Hale uses: the boolean restrictions
// in force, the device's sum of every installed profile's.
type globalRestrictions struct {
	RestrictedBool map[string]struct {
		Value bool `plist:"value"`
	} `plist:"restrictedBool,omitempty"`
}

// maxRestrictions bounds the keys kept from one answer; Apple has about 150 boolean ones.
const maxRestrictions = 1024

// resultBody is the union of the command-specific keys Hale understands.
type resultBody struct {
	SecurityInfo       *SecurityInfo       `plist:",omitempty"`
	QueryResponses     *DeviceInformation  `plist:",omitempty"`
	ProfileList        []Profile           `plist:",omitempty"`
	GlobalRestrictions *globalRestrictions `plist:",omitempty"`
}

// parse fills res from a raw result plist. A result whose command-specific part does not parse is
// an error: the device is told to try again rather than the answer being half-kept.
func parse(raw []byte, res *Result) error {
	var body resultBody
	if err := plist.Unmarshal(raw, &body); err != nil {
		return fmt.Errorf("commands: parse result plist: %w", err)
	}
	res.SecurityInfo = body.SecurityInfo
	res.DeviceInformation = body.QueryResponses
	res.ProfileList = body.ProfileList
	if g := body.GlobalRestrictions; g != nil {
		if len(g.RestrictedBool) > maxRestrictions {
			return fmt.Errorf("commands: Restrictions answer has %d boolean restrictions; at most %d", len(g.RestrictedBool), maxRestrictions)
		}
		res.Restrictions = make(map[string]bool, len(g.RestrictedBool))
		for k, v := range g.RestrictedBool {
			res.Restrictions[k] = v.Value
		}
	}
	if res.RequestType == "" {
		switch {
		case body.SecurityInfo != nil:
			res.RequestType = "SecurityInfo"
		case body.QueryResponses != nil:
			res.RequestType = "DeviceInformation"
		case body.ProfileList != nil:
			res.RequestType = "ProfileList"
		case body.GlobalRestrictions != nil:
			res.RequestType = "Restrictions"
		}
	}
	return nil
}
