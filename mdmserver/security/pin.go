package security

import (
	"context"
	"errors"

	"github.com/halemdm/hale/mdmserver/commands"
	"github.com/halemdm/hale/mdmserver/inventory"
)

// Lock and erase PINs are sealed under the master key and bound to their command
// (commands.PutPIN, in the unit of work that orders the lock or erase, see carryOut).

// PIN returns, for by, the PIN that unlocks Mac d after its lock or erase uuid. Every reading is
// on the record, and a PIN whose reading could not be recorded is not shown. A command d never
// got, or one without a PIN, is a Refusal of kind ErrNotFound.
func (s *Service) PIN(ctx context.Context, by Actor, d *inventory.Device, uuid string) (string, error) {
	if _, err := s.dep.Apple.Get(ctx, d.EnrollmentID, uuid); err != nil {
		return "", refuse(ErrNotFound, "no command "+uuid+" for device "+d.ID)
	}
	pin, err := s.dep.Apple.PIN(ctx, s.dep.Key, uuid)
	if errors.Is(err, commands.ErrNotFound) {
		return "", refuse(ErrNotFound, "command "+uuid+" has no PIN")
	} else if err != nil {
		return "", err
	}
	if err := s.record(ctx, by.entry("command.pin_view", d.ID, "", map[string]string{"command_id": uuid})); err != nil {
		return "", err
	}
	return pin, nil
}
