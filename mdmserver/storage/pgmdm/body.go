package pgmdm

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"

	"github.com/micromdm/nanomdm/mdm"
)

// Limits of nanomdm's schema (VARCHAR widths) and Hale's bound on a command body. The widths
// are checked here so a caller gets a clear error instead of a PostgreSQL one.
const (
	// MaxCommandSize bounds a queued command's plist. The largest Hale queues is an
	// InstallProfile with its certificates: tens of kilobytes.
	MaxCommandSize = 16 << 20
	maxIDLen       = 255 // enrollments.id
	maxUUIDLen     = 127 // commands.command_uuid
	maxTypeLen     = 63  // commands.request_type
)

// A sealed body is stored as a small XML document so it passes the schema's check that a
// command begins with "<?xml" (commands.command is TEXT), while no plist parser takes it for a
// command: its root element is not <plist>. The sealed bytes are in standard base64.
const (
	envelopePrefix = `<?xml version="1.0" encoding="UTF-8"?>` + "\n" + `<hale-sealed-command v="1">`
	envelopeSuffix = "</hale-sealed-command>\n"
)

// purpose binds a sealed body to its command, with the purpose string boltstore uses, so a
// body sealed by either store opens in the other (a migration can copy it as it is).
func purpose(uuid string) string { return "mdm-command/" + uuid }

// checkCommand rejects a command nanomdm's schema would refuse, or that Hale could not tell
// apart from a sealed body, before anything is written.
func checkCommand(cmd *mdm.Command) error {
	switch {
	case cmd == nil || cmd.CommandUUID == "" || cmd.Command.RequestType == "" || len(cmd.Raw) == 0:
		return errors.New("pgmdm: enqueue: command needs a UUID, a request type and a body")
	case len(cmd.CommandUUID) > maxUUIDLen:
		return fmt.Errorf("pgmdm: enqueue: command UUID is %d bytes, the limit is %d", len(cmd.CommandUUID), maxUUIDLen)
	case len(cmd.Command.RequestType) > maxTypeLen:
		return fmt.Errorf("pgmdm: enqueue: request type is %d bytes, the limit is %d", len(cmd.Command.RequestType), maxTypeLen)
	case len(cmd.Raw) > MaxCommandSize:
		return fmt.Errorf("pgmdm: enqueue: command body is %d bytes, the limit is %d", len(cmd.Raw), MaxCommandSize)
	case !bytes.HasPrefix(cmd.Raw, []byte("<?xml")):
		// The schema's CHECK on commands.command; sealing must not widen what is accepted.
		return errors.New(`pgmdm: enqueue: command body is not an XML plist (does not begin with "<?xml")`)
	case bytes.HasPrefix(cmd.Raw, []byte(envelopePrefix)):
		return errors.New("pgmdm: enqueue: command body is a sealed envelope, not a plist")
	}
	return nil
}

// sealBody returns the body as stored: the sealed envelope when the storage has a sealer, the
// plist itself otherwise.
func (s *Storage) sealBody(uuid string, raw []byte) []byte {
	if s.sealer == nil {
		return raw
	}
	return envelope(s.sealer.Seal(purpose(uuid), raw))
}

// envelope wraps sealed bytes as a stored body.
func envelope(sealed []byte) []byte {
	out := make([]byte, 0, len(envelopePrefix)+base64.StdEncoding.EncodedLen(len(sealed))+len(envelopeSuffix))
	out = append(out, envelopePrefix...)
	out = base64.StdEncoding.AppendEncode(out, sealed)
	return append(out, envelopeSuffix...)
}

// openBody returns the plist of a stored body. Fail closed: with a sealer every body must be a
// sealed envelope that opens for this UUID; without one, a sealed envelope cannot be opened
// and is an error rather than being sent to a device as if it were a plist.
func (s *Storage) openBody(uuid string, stored []byte) ([]byte, error) {
	sealed, isEnvelope, err := parseEnvelope(stored)
	switch {
	case err != nil:
		return nil, fmt.Errorf("pgmdm: queued command %s: %w", uuid, err)
	case isEnvelope && s.sealer == nil:
		return nil, fmt.Errorf("pgmdm: queued command %s is sealed, and this storage has no sealer (WithCommandSealer)", uuid)
	case !isEnvelope && s.sealer != nil:
		return nil, fmt.Errorf("pgmdm: queued command %s is stored in clear while bodies are sealed; refusing to send it", uuid)
	case !isEnvelope:
		return bytes.Clone(stored), nil
	}
	plain, err := s.sealer.Open(purpose(uuid), sealed)
	if err != nil {
		return nil, fmt.Errorf("pgmdm: queued command %s cannot be opened with the master key: %w", uuid, err)
	}
	return plain, nil
}

// parseEnvelope returns the sealed bytes of a stored body and whether it is an envelope at
// all. A body that begins as an envelope but is not a well-formed one is an error.
func parseEnvelope(stored []byte) (sealed []byte, ok bool, err error) {
	rest, ok := bytes.CutPrefix(stored, []byte(envelopePrefix))
	if !ok {
		return nil, false, nil
	}
	enc, ok := bytes.CutSuffix(rest, []byte(envelopeSuffix))
	if !ok {
		return nil, true, errors.New("sealed body is truncated (no closing element)")
	}
	if base64.StdEncoding.DecodedLen(len(enc)) > MaxCommandSize+1024 {
		return nil, true, errors.New("sealed body is larger than any command Hale queues")
	}
	sealed, err = base64.StdEncoding.Strict().AppendDecode(nil, enc)
	if err != nil {
		return nil, true, fmt.Errorf("sealed body is not valid base64: %w", err)
	}
	return sealed, true, nil
}
