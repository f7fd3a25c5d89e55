package localapi

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/windows"
)

// signatureSupported: Windows checks Authenticode signatures without cgo (WinVerifyTrust in
// wintrust.dll, through golang.org/x/sys/windows).
const signatureSupported = true

// verifySignature reports whether the file at path carries a valid Authenticode signature (an
// embedded one or the system catalog's) that chains to a root this machine trusts, as
// WinVerifyTrust's generic verify action judges it. Revocation is not checked: it needs the
// network, and a laptop offline must still get tokens for its signed app. What is verified is
// the file on disk at the moment of the check, not the image already running; the path being
// one only administrators can write (Program Files) is what ties the two.
func verifySignature(path string) error {
	p, err := windows.UTF16PtrFromString(path)
	if err != nil {
		return err
	}
	data := &windows.WinTrustData{
		Size:             uint32(unsafe.Sizeof(windows.WinTrustData{})),
		UIChoice:         windows.WTD_UI_NONE,
		RevocationChecks: windows.WTD_REVOKE_NONE,
		UnionChoice:      windows.WTD_CHOICE_FILE,
		StateAction:      windows.WTD_STATEACTION_VERIFY,
		FileOrCatalogOrBlobOrSgnrOrCert: unsafe.Pointer(&windows.WinTrustFileInfo{
			Size:     uint32(unsafe.Sizeof(windows.WinTrustFileInfo{})),
			FilePath: p,
		}),
	}
	verr := windows.WinVerifyTrustEx(windows.InvalidHWND, &windows.WINTRUST_ACTION_GENERIC_VERIFY_V2, data)
	data.StateAction = windows.WTD_STATEACTION_CLOSE
	_ = windows.WinVerifyTrustEx(windows.InvalidHWND, &windows.WINTRUST_ACTION_GENERIC_VERIFY_V2, data)
	if verr != nil {
		return fmt.Errorf("no valid Authenticode signature: %w", verr)
	}
	return nil
}
