package applesim

import (
	"fmt"
	"slices"
)

// settings runs a Settings command. Of its items the simulator knows ApplicationConfiguration
// (the managed app configuration of an app MDM installed, replaced whole, or removed when
// Configuration is absent); any other item is answered with an error of its own, as a device
// that does not support it does. The command is Acknowledged with one result per item.
func (d *Device) settings(c *command) result {
	items, ok := c.Body["Settings"].([]any)
	if !ok || len(items) == 0 {
		return formatError("Settings must be a non-empty array of dictionaries")
	}
	var results []any
	for _, it := range items {
		item, ok := it.(map[string]any)
		if !ok {
			return formatError("a Settings item is not a dictionary")
		}
		name, _ := item["Item"].(string)
		res := map[string]any{"Item": name, "Status": StatusAcknowledged}
		switch name {
		case "ApplicationConfiguration":
			if msg := d.applicationConfiguration(item); msg != "" {
				res["Status"] = StatusError
				res["ErrorChain"] = []any{map[string]any{"ErrorCode": 12021, "ErrorDomain": MDMErrorDomain,
					"LocalizedDescription": msg, "USEnglishDescription": msg}}
			}
		default:
			res["Status"] = StatusError
			res["ErrorChain"] = []any{map[string]any{"ErrorCode": CodeUnknownCommand, "ErrorDomain": MDMErrorDomain,
				"LocalizedDescription": fmt.Sprintf("The setting “%s” is not supported.", name)}}
		}
		results = append(results, res)
	}
	return result{status: StatusAcknowledged, fields: map[string]any{"Settings": results}}
}

// applicationConfiguration applies one ApplicationConfiguration item and answers "" or the
// device's description of why it did not, as Apple words it for the ErrorChain.
func (d *Device) applicationConfiguration(item map[string]any) string {
	id, _ := item["Identifier"].(string)
	if id == "" {
		return "ApplicationConfiguration needs an Identifier."
	}
	if !slices.Contains(d.state.ManagedApps, id) {
		return fmt.Sprintf("The app “%s” is not managed.", id)
	}
	conf, present := item["Configuration"]
	if !present {
		delete(d.state.AppConfigurations, id)
		return ""
	}
	dict, ok := conf.(map[string]any)
	if !ok {
		return "Configuration must be a dictionary."
	}
	if d.state.AppConfigurations == nil {
		d.state.AppConfigurations = map[string]map[string]any{}
	}
	d.state.AppConfigurations[id] = copyDict(dict)
	return ""
}

// ManagedAppConfiguration is what the app bundleID reads from UserDefaults under
// com.apple.configuration.managed: the configuration MDM set for it, or nil.
func (d *Device) ManagedAppConfiguration(bundleID string) map[string]any {
	d.mu.Lock()
	defer d.mu.Unlock()
	return copyDict(d.state.AppConfigurations[bundleID])
}
