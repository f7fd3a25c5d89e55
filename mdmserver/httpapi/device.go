package httpapi

import (
	"github.com/halemdm/hale/api"
	"github.com/halemdm/hale/mdmserver/inventory"
)

// Device is the wire form of a device's inventory record: the admin API shows it on its device
// routes, whichever handler answers.
func Device(d *inventory.Device) api.Device {
	out := api.Device{
		ID: d.ID, Platform: string(d.Platform), OS: d.OS, Owner: d.Owner, Group: d.Group, Serial: d.Serial, UDID: d.UDID,
		EnrollmentID: d.EnrollmentID, Hostname: d.Hostname, EnrolledAt: d.EnrolledAt, LastSeen: d.LastSeen,
		CertSerials: d.CertSerials, CertSHA256: d.CertSHA256, State: string(d.State), StateChangedAt: d.StateChangedAt,
		Enrollment: d.Enrollment, UserEnrollment: d.UserEnrollment, AgentVersion: d.AgentVersion,
	}
	if w := d.Wipe; w != nil {
		out.Wipe = &api.DeviceWipe{CommandID: w.CommandID, State: string(w.State)}
	}
	return out
}
