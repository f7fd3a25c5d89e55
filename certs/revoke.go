package certs

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"
	"time"

	"github.com/smallstep/certificates/authority"
	"github.com/smallstep/certificates/authority/provisioner"
	"github.com/smallstep/nosql"
)

// crlLifetime is the validity of each CRL; it is reissued after two thirds of it.
const crlLifetime = 24 * time.Hour

// ErrUnknownCertificate is returned by Revoke for a serial this CA never issued.
var ErrUnknownCertificate = errors.New("certs: no certificate with this serial number was issued by this CA")

// Revocation reasons (RFC 5280 CRLReason) accepted by Revoke; any other text is recorded as
// "unspecified".
var reasonCodes = map[string]int{
	"unspecified":          0,
	"keyCompromise":        1,
	"affiliationChanged":   3,
	"superseded":           4,
	"cessationOfOperation": 5,
	"certificateHold":      6,
	"privilegeWithdrawn":   9,
}

// Revoke revokes the certificate with the given serial number and reissues the CRL. reason is
// kept as text; an RFC 5280 reason name (for example "keyCompromise", "cessationOfOperation")
// also sets the CRL reason code. Revoking a revoked certificate is not an error.
func (a *Authority) Revoke(ctx context.Context, serial *big.Int, reason string) error {
	if serial == nil || serial.Sign() <= 0 {
		return fmt.Errorf("%w: invalid serial number", ErrBadRequest)
	}
	sn := serial.String()
	if a.isRevoked(sn) {
		return nil
	}
	cert, err := a.db.GetCertificate(sn)
	if err != nil {
		if nosql.IsErrNotFound(err) {
			return fmt.Errorf("%w: %s", ErrUnknownCertificate, sn)
		}
		return fmt.Errorf("certs: look up certificate %s: %w", sn, err)
	}
	err = a.auth.Revoke(provisioner.NewContextWithMethod(ctx, provisioner.RevokeMethod), &authority.RevokeOptions{
		Serial:      sn,
		Reason:      reason,
		ReasonCode:  reasonCodes[reason],
		PassiveOnly: false,
		MTLS:        true, // Hale authorised the call; no step one-time token is involved
		Crt:         cert,
	})
	// The authority writes the DB before reissuing the CRL, so the DB says whether the
	// revocation took even when the call failed later.
	revoked, dbErr := a.db.IsRevoked(sn)
	if dbErr != nil {
		return fmt.Errorf("certs: revoke %s: check revocation: %w", sn, dbErr)
	}
	if revoked {
		a.revokedMu.Lock()
		a.revoked[sn] = struct{}{}
		a.revokedMu.Unlock()
		a.logger.Info("revoked certificate", "serial", sn, "subject", cert.Subject.CommonName, "reason", reason)
	}
	if err != nil {
		return fmt.Errorf("certs: revoke %s: %w", sn, err)
	}
	if _, err := a.refreshCRL(); err != nil {
		return fmt.Errorf("certs: revoke %s: revoked, but the CRL was not reissued: %w", sn, err)
	}
	return nil
}

// RefreshRevocations reads the revoked certificates from the authority's database again and
// adds them to the set mTLS verification refuses, and drops the cached CRL so the next CRL call
// reads (or reissues) it. An access replica calls it when another server (the primary) revoked a
// certificate in the shared database; without it a replica would accept that certificate until
// it restarts. Serials are only added, never dropped: a revocation is never undone, and a
// Revoke on this authority racing the read keeps its serial. On a read error the set is left
// as it was and the error returned: the caller retries (a follower reloads everything it
// keeps).
func (a *Authority) RefreshRevocations(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	revoked, err := a.db.GetRevokedCertificates()
	if err != nil {
		return fmt.Errorf("certs: read revoked certificates: %w", err)
	}
	a.revokedMu.Lock()
	for _, r := range *revoked {
		a.revoked[r.Serial] = struct{}{}
	}
	a.revokedMu.Unlock()
	a.crlMu.Lock()
	a.crl = nil
	a.crlMu.Unlock()
	return nil
}

// IsRevoked reports whether the certificate with this serial number is revoked. It reads an
// in-memory copy of the authority's revocation table, so it is fast enough for every handshake.
func (a *Authority) IsRevoked(serial *big.Int) (bool, error) {
	if serial == nil {
		return false, errors.New("certs: nil serial number")
	}
	return a.isRevoked(serial.String()), nil
}

func (a *Authority) isRevoked(sn string) bool {
	a.revokedMu.RLock()
	_, ok := a.revoked[sn]
	a.revokedMu.RUnlock()
	return ok
}

type cachedCRL struct {
	der          []byte
	refreshAfter time.Time
}

// CRL returns the current DER-encoded CRL, signed by the intermediate. It is cached and
// reissued after a revocation or when two thirds of its lifetime have passed.
func (a *Authority) CRL(ctx context.Context) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	a.crlMu.Lock()
	c := a.crl
	a.crlMu.Unlock()
	if c != nil && time.Now().Before(c.refreshAfter) {
		return c.der, nil
	}
	c, err := a.refreshCRL()
	if err != nil {
		return nil, err
	}
	return c.der, nil
}

// refreshCRL generates a new CRL when the stored one is missing, older than the latest
// revocation, or due, and caches it.
func (a *Authority) refreshCRL() (*cachedCRL, error) {
	a.crlMu.Lock()
	defer a.crlMu.Unlock()
	info, err := a.auth.GetCertificateRevocationList()
	if err == nil && a.crlCurrent(info) {
		return a.cacheCRL(info)
	}
	if err := a.auth.GenerateCertificateRevocationList(); err != nil {
		return nil, fmt.Errorf("certs: generate CRL: %w", err)
	}
	if info, err = a.auth.GetCertificateRevocationList(); err != nil {
		return nil, fmt.Errorf("certs: read CRL: %w", err)
	}
	return a.cacheCRL(info)
}

// crlCurrent reports whether a stored CRL is still fresh and lists every revoked serial.
func (a *Authority) crlCurrent(info *authority.CertificateRevocationListInfo) bool {
	rl, err := x509.ParseRevocationList(info.Data)
	if err != nil || !time.Now().Before(refreshTime(rl)) {
		return false
	}
	listed := make(map[string]bool, len(rl.RevokedCertificateEntries))
	for _, e := range rl.RevokedCertificateEntries {
		listed[e.SerialNumber.String()] = true
	}
	a.revokedMu.RLock()
	defer a.revokedMu.RUnlock()
	for sn := range a.revoked {
		if !listed[sn] {
			return false
		}
	}
	return true
}

func (a *Authority) cacheCRL(info *authority.CertificateRevocationListInfo) (*cachedCRL, error) {
	rl, err := x509.ParseRevocationList(info.Data)
	if err != nil {
		return nil, fmt.Errorf("certs: stored CRL does not parse: %w", err)
	}
	if err := rl.CheckSignatureFrom(a.inter); err != nil {
		return nil, fmt.Errorf("certs: stored CRL is not signed by the intermediate: %w", err)
	}
	a.crl = &cachedCRL{der: info.Data, refreshAfter: refreshTime(rl)}
	return a.crl, nil
}

// refreshTime is two thirds into a CRL's validity.
func refreshTime(rl *x509.RevocationList) time.Time {
	return rl.ThisUpdate.Add(rl.NextUpdate.Sub(rl.ThisUpdate) * 2 / 3)
}
