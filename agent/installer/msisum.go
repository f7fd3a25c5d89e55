package installer

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// wixl (msitools 0.101) stamps an MSI's summary information with the build's wall-clock time and
// a random revision number (the package code), whatever the sources say, which alone makes two
// builds of the same inputs differ. pinSummary overwrites exactly those three properties in
// place: PID_REVNUMBER with packageCode and PID_CREATE_DTM and PID_LASTSAVE_DTM with mtime.
// Values of the same size replace them, so no other byte moves; Build then checks the result
// with msiinfo.

// summaryFMTID is FMTID_SummaryInformation as it is stored (little-endian GUID).
var summaryFMTID = []byte{0xE0, 0x85, 0x9F, 0xF2, 0xF9, 0x4F, 0x68, 0x10, 0xAB, 0x91, 0x08, 0x00, 0x2B, 0x27, 0xB3, 0xD9}

// The property IDs and types pinSummary rewrites.
const (
	pidRevNumber   = 9
	pidCreateDTM   = 12
	pidLastSaveDTM = 13
	vtLPSTR        = 30
	vtFILETIME     = 64
)

// pinSummary rewrites msi's summary information in place (see above).
func pinSummary(msi []byte, packageCode string, mtime time.Time) error {
	i := bytes.Index(msi, summaryFMTID)
	if i < 28 || msi[i-28] != 0xFE || msi[i-27] != 0xFF {
		return errors.New("installer: the MSI has no summary information where expected")
	}
	stream := msi[i-28:]
	le := binary.LittleEndian
	sec := int(le.Uint32(stream[44:]))
	if sec+8 > len(stream) {
		return errors.New("installer: the MSI's summary information is truncated")
	}
	n := int(le.Uint32(stream[sec+4:]))
	if n > 64 || sec+8+8*n > len(stream) {
		return errors.New("installer: the MSI's summary information is malformed")
	}
	// FILETIME: 100 ns intervals since 1601-01-01 UTC.
	ft := uint64(mtime.UnixNano()/100) + 116444736000000000
	done := 0
	for k := range n {
		pid := le.Uint32(stream[sec+8+8*k:])
		off := sec + int(le.Uint32(stream[sec+12+8*k:]))
		if off+8 > len(stream) {
			return errors.New("installer: an MSI summary property is out of bounds")
		}
		typ := le.Uint32(stream[off:])
		switch {
		case (pid == pidCreateDTM || pid == pidLastSaveDTM) && typ == vtFILETIME:
			if off+12 > len(stream) {
				return errors.New("installer: an MSI summary time is out of bounds")
			}
			le.PutUint64(stream[off+4:], ft)
			done++
		case pid == pidRevNumber && typ == vtLPSTR:
			size := int(le.Uint32(stream[off+4:]))
			if size != len(packageCode)+1 || off+8+size > len(stream) {
				return fmt.Errorf("installer: the MSI's revision number has %d bytes, want %d", size, len(packageCode)+1)
			}
			copy(stream[off+8:], packageCode)
			done++
		}
	}
	if done != 3 {
		return fmt.Errorf("installer: found %d of the 3 MSI summary properties to pin", done)
	}
	return nil
}
