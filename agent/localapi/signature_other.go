//go:build !windows

package localapi

import "errors"

// signatureSupported: outside Windows no code signature check is available without cgo (macOS's
// is the Security framework's SecStaticCodeCheckValidity; Linux executables carry none).
const signatureSupported = false

func verifySignature(string) error {
	return errors.New("code signatures are not checked on this OS")
}
