package mdmserver

import (
	"net/http"

	"github.com/micromdm/nanomdm/cryptoutil"
	httpmdm "github.com/micromdm/nanomdm/http/mdm"

	"github.com/halemdm/hale/internal/nanolog"
)

// maxMDMBody bounds a check-in or command result. The largest answers Hale asks for (ProfileList,
// CertificateList) stay far below it.
const maxMDMBody = 8 << 20

// mdmHandler is the /mdm endpoint: the body is bounded, the device's identity certificate is taken
// from the TLS connection or the Mdm-Signature header, verified against the CAs devices may hold,
// and the request handed to nanomdm's service behind certauth.
func (s *Server) mdmHandler() http.Handler {
	logger := nanolog.New(s.log.With("component", "mdm-http"))
	var h http.Handler = httpmdm.CheckinAndCommandHandler(s.mdm, logger)
	h = httpmdm.CertVerifyMiddleware(h, deviceCertVerifier{s}, logger.With("handler", "cert-verify"))
	fromTLS := httpmdm.CertExtractTLSMiddleware(h, logger.With("handler", "cert-extract-tls"))
	fromSignature := httpmdm.CertExtractMdmSignatureMiddleware(h,
		httpmdm.MdmSignatureVerifierFunc(cryptoutil.VerifyMdmSignature),
		httpmdm.SigLogWithLogger(logger.With("handler", "cert-extract-signature")))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPut && r.Method != http.MethodPost {
			w.Header().Set("Allow", "PUT, POST")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxMDMBody)
		// Apple devices sign with Mdm-Signature when the profile sets SignMessage, and otherwise
		// present their identity in the TLS handshake (already chain-verified by crypto/tls).
		if r.Header.Get("Mdm-Signature") == "" && r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
			fromTLS.ServeHTTP(w, r)
			return
		}
		fromSignature.ServeHTTP(w, r)
	})
}
