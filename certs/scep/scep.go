// Package scep serves SCEP (RFC 8894) at /scep for Apple device enrollment, issuing from Hale's
// embedded authority (package certs).
//
// Messages are parsed with github.com/smallstep/scep; the CertRep is built here with pkcs7 so it
// is signed with SHA-256 and encrypted with AES (the library's CertRep signs with SHA-1). The SCEP
// server inside smallstep/certificates is not used: it authorises enrollments only with a static
// challenge or an HTTP webhook, while Hale checks one-time challenges bound to an enrollment with
// a Go callback (ChallengeFunc) and issues through certs.Authority.Sign with the Apple profile.
//
// Importing this package sets pkcs7.ContentEncryptionAlgorithm to AES-128-CBC for the process:
// the pkcs7 library reads that global in Encrypt, and setting it once at init keeps it free of
// data races.
package scep

import (
	"context"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"

	"github.com/smallstep/pkcs7"
	smscep "github.com/smallstep/scep"

	"github.com/halemdm/hale/certs"
	"github.com/halemdm/hale/internal/problem"
	"github.com/halemdm/hale/internal/randid"
)

func init() {
	pkcs7.ContentEncryptionAlgorithm = pkcs7.EncryptionAlgorithmAES128CBC
}

// maxMessage bounds a PKIOperation message; real ones are a few kilobytes.
const maxMessage = 64 << 10

// caps are the capabilities announced by GetCACaps.
const caps = "POSTPKIOperation\nSHA-256\nAES\nSCEPStandard\n"

// ChallengeFunc checks the challenge password of an enrollment request and holds the challenge
// for this request's issuance, without spending it: a request the CA refuses must leave the
// challenge to the device's next try. While held, the challenge must be refused to other
// requests. Any error refuses the request.
type ChallengeFunc func(ctx context.Context, challenge string, csr *x509.CertificateRequest) (*Claim, error)

// Claim is a challenge held for one request.
type Claim struct {
	// DeviceID is what the issued identity names.
	DeviceID string
	// Commit spends the challenge on the certificate just issued. An error means it could not
	// be spent on it: the request is refused and the certificate revoked.
	Commit func(ctx context.Context, issued *x509.Certificate) error
	// Release gives the challenge back when no certificate was issued; err says why not.
	Release func(ctx context.Context, err error)
}

// Server is the SCEP endpoint. It is an http.Handler.
type Server struct {
	ca     *certs.Authority
	check  ChallengeFunc
	logger *slog.Logger
}

// Option configures a Server.
type Option func(*Server)

// WithLogger sets the logger; the default discards logs.
func WithLogger(l *slog.Logger) Option {
	return func(s *Server) {
		if l != nil {
			s.logger = l
		}
	}
}

// New returns a SCEP server issuing KindAppleMDM identities from ca for requests whose challenge
// check accepts. It makes the RA certificate now so a broken CA shows at start.
func New(ca *certs.Authority, check ChallengeFunc, opts ...Option) (*Server, error) {
	if ca == nil || check == nil {
		return nil, errors.New("scep: an authority and a challenge check are required")
	}
	s := &Server{ca: ca, check: check, logger: slog.New(slog.DiscardHandler)}
	for _, o := range opts {
		o(s)
	}
	if _, _, err := ca.SCEPRA(); err != nil {
		return nil, err
	}
	return s, nil
}

// ServeHTTP answers GetCACaps, GetCACert and PKIOperation.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch op := r.URL.Query().Get("operation"); op {
	case "GetCACaps":
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, caps)
	case "GetCACert":
		s.getCACert(w)
	case "PKIOperation":
		s.pkiOperation(w, r)
	default:
		problem.Error(w, r, http.StatusBadRequest, "unknown-scep-operation", fmt.Sprintf("operation %q is not GetCACaps, GetCACert or PKIOperation", op))
	}
}

func (s *Server) getCACert(w http.ResponseWriter) {
	ra, _, err := s.ca.SCEPRA()
	if err != nil {
		s.internalError(w, "SCEP RA", err)
		return
	}
	deg, err := smscep.DegenerateCertificates([]*x509.Certificate{ra, s.ca.Intermediate(), s.ca.Root()})
	if err != nil {
		s.internalError(w, "GetCACert", err)
		return
	}
	w.Header().Set("Content-Type", "application/x-x509-ca-ra-cert")
	w.Write(deg)
}

func (s *Server) pkiOperation(w http.ResponseWriter, r *http.Request) {
	msg, err := readMessage(w, r)
	if err != nil {
		problem.Error(w, r, http.StatusBadRequest, "bad-scep-message", err.Error())
		return
	}
	req, err := smscep.ParsePKIMessage(msg)
	if err != nil {
		problem.Error(w, r, http.StatusBadRequest, "bad-scep-message", "the message is not a signed SCEP pkiMessage")
		return
	}
	ra, raKey, err := s.ca.SCEPRA()
	if err != nil {
		s.internalError(w, "SCEP RA", err)
		return
	}
	resp, err := s.handle(r.Context(), req, ra, raKey)
	if err != nil {
		s.internalError(w, "PKIOperation", err)
		return
	}
	w.Header().Set("Content-Type", "application/x-pki-message")
	w.Write(resp)
}

// handle answers a parsed request with a CertRep: success with a certificate, or failure. It
// returns an error only when not even a failure can be signed.
func (s *Server) handle(ctx context.Context, req *smscep.PKIMessage, ra *x509.Certificate, raKey any) ([]byte, error) {
	fail := func(info smscep.FailInfo, why string, args ...any) ([]byte, error) {
		s.logger.Warn("SCEP request refused", append([]any{"transaction_id", string(req.TransactionID), "reason", why}, args...)...)
		return certRep(req, ra, raKey, nil, nil, info)
	}
	if req.MessageType != smscep.PKCSReq {
		return fail(smscep.BadRequest, "only PKCSReq is supported", "message_type", req.MessageType.String())
	}
	if err := req.DecryptPKIEnvelope(ra, raKey); err != nil {
		return fail(smscep.BadMessageCheck, "cannot decrypt the envelope", "err", err)
	}
	p7, err := pkcs7.Parse(req.Raw)
	if err != nil {
		return fail(smscep.BadMessageCheck, "cannot parse the message", "err", err)
	}
	signer := p7.GetOnlySigner()
	if signer == nil {
		return fail(smscep.BadMessageCheck, "the message needs exactly one signer certificate")
	}
	if req.ChallengePassword == "" {
		return fail(smscep.BadRequest, "no challenge password")
	}
	claim, err := s.check(ctx, req.ChallengePassword, req.CSR)
	if err != nil {
		return fail(smscep.BadRequest, "challenge refused", "err", err)
	}
	chain, err := s.ca.Sign(ctx, req.CSR, certs.Profile{Kind: certs.KindAppleMDM, DeviceID: claim.DeviceID})
	if err != nil {
		claim.Release(ctx, err)
		return fail(smscep.BadRequest, "certificate request refused", "device_id", claim.DeviceID, "err", err)
	}
	if err := claim.Commit(ctx, chain[0]); err != nil {
		// Issued, but the challenge could not be spent on it (another request took the challenge
		// over, the enrollment was revoked, the store failed): the certificate must be unusable.
		if rerr := s.ca.Revoke(context.WithoutCancel(ctx), chain[0].SerialNumber, "cessationOfOperation"); rerr != nil {
			s.logger.Error("SCEP: cannot revoke a certificate whose challenge was not spent",
				"serial", chain[0].SerialNumber.String(), "err", rerr)
		}
		return fail(smscep.BadRequest, "challenge not spent", "device_id", claim.DeviceID, "err", err)
	}
	s.logger.Info("SCEP enrollment", "device_id", claim.DeviceID, "serial", chain[0].SerialNumber.String(),
		"transaction_id", string(req.TransactionID))
	return certRep(req, ra, raKey, chain[0], signer, "")
}

// OIDs of the SCEP signed attributes (RFC 8894 section 3.2.1).
var (
	oidMessageType    = asn1.ObjectIdentifier{2, 16, 840, 1, 113733, 1, 9, 2}
	oidPKIStatus      = asn1.ObjectIdentifier{2, 16, 840, 1, 113733, 1, 9, 3}
	oidFailInfo       = asn1.ObjectIdentifier{2, 16, 840, 1, 113733, 1, 9, 4}
	oidSenderNonce    = asn1.ObjectIdentifier{2, 16, 840, 1, 113733, 1, 9, 5}
	oidRecipientNonce = asn1.ObjectIdentifier{2, 16, 840, 1, 113733, 1, 9, 6}
	oidTransactionID  = asn1.ObjectIdentifier{2, 16, 840, 1, 113733, 1, 9, 7}
)

// certRep builds a CertRep signed by the RA with SHA-256. With a certificate it is a success
// whose degenerate PKCS#7 is encrypted (AES) to the requester's signing certificate; otherwise
// it is a failure with info.
func certRep(req *smscep.PKIMessage, ra *x509.Certificate, raKey any, issued, requester *x509.Certificate, info smscep.FailInfo) ([]byte, error) {
	var content []byte
	status := smscep.FAILURE
	if issued != nil {
		deg, err := smscep.DegenerateCertificates([]*x509.Certificate{issued})
		if err != nil {
			return nil, err
		}
		if content, err = pkcs7.Encrypt(deg, []*x509.Certificate{requester}); err != nil {
			return nil, fmt.Errorf("encrypt CertRep to the requester: %w", err)
		}
		status = smscep.SUCCESS
	}
	nonce, err := newNonce()
	if err != nil {
		return nil, err
	}
	attrs := []pkcs7.Attribute{
		{Type: oidTransactionID, Value: req.TransactionID},
		{Type: oidMessageType, Value: smscep.CertRep},
		{Type: oidPKIStatus, Value: status},
		{Type: oidSenderNonce, Value: nonce},
		{Type: oidRecipientNonce, Value: req.SenderNonce},
	}
	if issued == nil {
		attrs = append(attrs, pkcs7.Attribute{Type: oidFailInfo, Value: info})
	}
	sd, err := pkcs7.NewSignedData(content)
	if err != nil {
		return nil, err
	}
	sd.SetDigestAlgorithm(pkcs7.OIDDigestAlgorithmSHA256)
	// The issued certificate goes first (RFC 8894 3.3.2); AddSigner appends the RA certificate,
	// which lets a client verify the CertRep without the GetCACert answer.
	if issued != nil {
		sd.AddCertificate(issued)
	}
	if err := sd.AddSigner(ra, raKey, pkcs7.SignerInfoConfig{ExtraSignedAttributes: attrs}); err != nil {
		return nil, fmt.Errorf("sign CertRep: %w", err)
	}
	return sd.Finish()
}

// readMessage returns the pkiMessage of a POST body or of a GET's base64 message parameter.
func readMessage(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	switch r.Method {
	case http.MethodPost:
		b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxMessage))
		if err != nil {
			return nil, fmt.Errorf("read message: %w", err)
		}
		return b, nil
	case http.MethodGet:
		m := r.URL.Query().Get("message")
		if len(m) > maxMessage*4/3+4 {
			return nil, errors.New("message too large")
		}
		// Some clients send standard base64 with '+' unescaped, which arrives as ' '.
		b, err := base64.StdEncoding.DecodeString(strings.ReplaceAll(m, " ", "+"))
		if err != nil {
			return nil, errors.New("message parameter is not base64")
		}
		return b, nil
	}
	return nil, fmt.Errorf("method %s not allowed; use GET or POST", r.Method)
}

func (s *Server) internalError(w http.ResponseWriter, what string, err error) {
	s.logger.Error("SCEP "+what, "err", err)
	problem.Error(w, nil, http.StatusInternalServerError, "scep-unavailable", "The SCEP service failed; see the server log.")
}

func newNonce() (smscep.SenderNonce, error) {
	return smscep.SenderNonce(randid.Bytes(16)), nil
}
