package installer

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
)

// Signer signs Windows executables and MSIs with Authenticode through osslsigncode.
type Signer struct {
	// CertFile is the code-signing certificate, with its chain (PEM or DER).
	CertFile string
	// KeyFile is its private key (PEM or DER, unencrypted).
	KeyFile string
	// TimestampURL, when set, is an RFC 3161 time-stamping service, so the signature outlives
	// the certificate.
	TimestampURL string
}

// sign signs path in place, naming the program desc.
func (s *Signer) sign(ctx context.Context, path, desc string) error {
	tool, err := exec.LookPath("osslsigncode")
	if err != nil {
		return fmt.Errorf("installer: signing needs osslsigncode: %w", err)
	}
	if s.CertFile == "" || s.KeyFile == "" {
		return errors.New("installer: signing needs a certificate and its key")
	}
	out := path + ".signed"
	args := []string{"sign", "-certs", s.CertFile, "-key", s.KeyFile, "-n", desc, "-h", "sha256"}
	if s.TimestampURL != "" {
		args = append(args, "-ts", s.TimestampURL)
	}
	args = append(args, "-in", path, "-out", out)
	if b, err := exec.CommandContext(ctx, tool, args...).CombinedOutput(); err != nil {
		os.Remove(out)
		return fmt.Errorf("installer: osslsigncode: %v: %s", err, b)
	}
	return os.Rename(out, path)
}
