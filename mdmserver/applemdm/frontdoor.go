package applemdm

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/micromdm/nanomdm/cryptoutil"
	"github.com/micromdm/nanomdm/mdm"
	"github.com/micromdm/nanomdm/service"
	"github.com/micromdm/nanomdm/service/certauth"

	"github.com/halemdm/hale/certs"
	"github.com/halemdm/hale/internal/problem"
	"github.com/halemdm/hale/mdmserver/httpapi"
	"github.com/halemdm/hale/mdmserver/inventory"
)

// MaxMessageBytes bounds a check-in or command result. The largest answers Hale asks for
// (ProfileList, CertificateList) stay far below it.
const MaxMessageBytes = 8 << 20

// ServeMDM is the /mdm endpoint: it reads the bounded body, takes the device's identity
// certificate from the Mdm-Signature header or the TLS connection, accepts only Apple device
// identities, and hands the message to nanomdm's service behind Hale's decorators. Hale answers
// its own refusals as problem+json; it never answers 401, which tells an Apple device to give up
// its enrollment.
func (s *Service) ServeMDM(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPut && r.Method != http.MethodPost {
		w.Header().Set("Allow", "PUT, POST")
		problem.Error(w, r, http.StatusMethodNotAllowed, "method-not-allowed", "/mdm takes PUT (check-ins) and POST")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxMessageBytes))
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		problem.Error(w, r, http.StatusRequestEntityTooLarge, "body-too-large",
			fmt.Sprintf("an MDM message is at most %d bytes", MaxMessageBytes))
		return
	} else if err != nil {
		problem.BadRequest(w, r, "reading the MDM message: "+err.Error())
		return
	}
	cert, perr := s.mdmIdentity(r, body)
	if perr != nil {
		s.log.WarnContext(r.Context(), "MDM request refused", "code", perr.Code, "detail", perr.Detail)
		problem.Write(w, r, perr)
		return
	}
	req := mdm.NewRequestWithContext(r.Context(), cert)
	if q := r.URL.Query(); len(q) > 0 {
		req.Params = make(map[string]string, len(q))
		for k, v := range q {
			req.Params[k] = v[0]
		}
	}
	var resp []byte
	if strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-apple-aspen-mdm-checkin") {
		resp, err = service.CheckinRequest(s.mdm, req, body)
	} else {
		resp, err = service.CommandAndReportResultsRequest(s.mdm, req, body)
	}
	if err != nil {
		s.mdmError(w, r, err)
		return
	}
	w.Write(resp)
}

// mdmIdentity returns the request's verified Apple device identity: the Mdm-Signature header's
// signer when the device signs its messages, else the TLS client certificate (chain-verified in
// the handshake).
func (s *Service) mdmIdentity(r *http.Request, body []byte) (*x509.Certificate, *problem.Details) {
	var cert *x509.Certificate
	if sig := r.Header.Get("Mdm-Signature"); sig != "" {
		c, err := cryptoutil.VerifyMdmSignature(sig, body)
		if err != nil {
			return nil, problem.New(http.StatusBadRequest, "bad-mdm-signature", "the Mdm-Signature header does not verify: "+err.Error())
		}
		cert = c
	} else if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		cert = r.TLS.PeerCertificates[0]
	}
	if cert == nil {
		return nil, problem.New(http.StatusForbidden, "identity-required",
			"an MDM message needs the device's identity certificate (TLS client certificate or Mdm-Signature)")
	}
	if err := s.verifyAppleIdentity(r.Context(), cert); err != nil {
		return nil, problem.New(http.StatusForbidden, "not-an-apple-identity", err.Error())
	}
	return cert, nil
}

// verifyAppleIdentity accepts an Apple device identity: one this CA issued over SCEP (not
// revoked), or one from a configured extra device CA (mdm_ca_file). An agent's identity, a
// server certificate or anything else of this CA is refused: they are valid client
// certificates, but not for /mdm.
func (s *Service) verifyAppleIdentity(ctx context.Context, cert *x509.Certificate) error {
	err := s.d.CA.VerifyClientCert([]*x509.Certificate{cert})
	if err != nil {
		if s.d.VerifyExtraCA != nil && s.d.VerifyExtraCA([]*x509.Certificate{cert}) == nil {
			return nil
		}
		return err
	}
	switch kind := certs.KindOf(cert); kind {
	case certs.KindAppleMDM:
		return nil
	case 0:
		// Issued before certificates named their kind: the device record it names decides.
		d, err := s.d.Inventory.Get(ctx, cert.Subject.CommonName)
		if err != nil || d.Platform != inventory.PlatformApple {
			return fmt.Errorf("certificate %s is not an Apple device identity", cert.SerialNumber.Text(16))
		}
		return nil
	default:
		return fmt.Errorf("a certificate issued for an %s is not an Apple device identity", kind)
	}
}

// mdmError answers an error from nanomdm's service chain: Hale's own refusals as they are,
// nanomdm's decoding errors as 400, certificate association failures as 403, the rest as 500.
func (s *Service) mdmError(w http.ResponseWriter, r *http.Request, err error) {
	var p *problem.Details
	var status *service.HTTPStatusError
	switch {
	case errors.As(err, &p):
		s.log.WarnContext(r.Context(), "MDM message refused", "code", p.Code, "detail", p.Detail)
		problem.Write(w, r, p)
	case errors.Is(err, certauth.ErrNoCertAssoc), errors.Is(err, certauth.ErrNoCertReuse), errors.Is(err, certauth.ErrMissingCert):
		s.log.WarnContext(r.Context(), "MDM message refused", "err", err)
		problem.Error(w, r, http.StatusForbidden, "certificate-not-associated",
			"the identity certificate is not the one this enrollment was made with")
	case errors.As(err, &status) && status.Status < 500:
		problem.Error(w, r, status.Status, "invalid-mdm-message", err.Error())
	default:
		httpapi.Internal(s.log, w, r, err)
	}
}
