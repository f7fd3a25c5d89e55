package agent

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/halemdm/hale/agent/state"
	"github.com/halemdm/hale/api"
	"github.com/halemdm/hale/internal/problem"
	"github.com/halemdm/hale/internal/rootpin"
)

// EnrollConfig is what `mdmagent enroll` needs.
type EnrollConfig struct {
	ServerURL string
	Token     string
	// CAFingerprint is the hex SHA-256 of the server's root CA certificate (colons optional,
	// any case). With it, the server's TLS is trusted on first use only if /ca/root.pem has that
	// fingerprint; without it, the server's TLS must verify against the system roots.
	CAFingerprint string
	// Force replaces an existing enrollment.
	Force bool
	Facts Facts
	// SystemRoots replaces the system root pool (tests). Nil means the OS roots.
	SystemRoots *x509.CertPool
	// Timeout bounds each request; zero means 30 s.
	Timeout time.Duration
	Logger  *slog.Logger
}

// Enroll creates the device key, has the server sign it, pins the server's CA and writes the
// identity to store. The key never leaves the device; only its CSR is sent.
func Enroll(ctx context.Context, store *state.Store, cfg EnrollConfig) (*state.Identity, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	base, u, err := normalizeServerURL(cfg.ServerURL)
	if err != nil {
		return nil, err
	}
	if strings.TrimSpace(cfg.Token) == "" {
		return nil, errors.New("an enrollment token is required: create one with `mdmctl enroll --platform agent`")
	}
	var want string
	if cfg.CAFingerprint != "" {
		if want, err = rootpin.ParseFingerprint(cfg.CAFingerprint); err != nil {
			return nil, err
		}
	}
	if store.Enrolled() && !cfg.Force {
		old, err := store.LoadIdentity()
		if err != nil {
			return nil, fmt.Errorf("the state directory %s holds an unreadable enrollment (%v); pass --force to enroll again", store.Dir(), err)
		}
		return nil, fmt.Errorf("this device is already enrolled as %s with %s; pass --force to discard that identity and enroll again", old.DeviceID, old.ServerURL)
	}

	ca, err := fetchServerCA(ctx, base, u.Hostname(), want, cfg.SystemRoots, timeout)
	if err != nil {
		return nil, err
	}
	log.Info("pinned the server CA", "subject", ca.Subject.String(), "sha256", rootpin.Fingerprint(ca))

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating the device key: %w", err)
	}
	csr, err := makeCSR(key)
	if err != nil {
		return nil, err
	}
	c := newClient(base, pinnedTLS(ca, nil))
	defer c.tr.CloseIdleConnections()
	var resp enrollResponse
	err = c.do(ctx, timeout, http.MethodPost, "/agent/v1/enroll", api.AgentEnrollRequest{Token: cfg.Token, CSR: csr, Facts: cfg.Facts}, &resp)
	if err != nil {
		if problemStatus(err) == http.StatusUnauthorized {
			return nil, fmt.Errorf("the server refused the enrollment token (unknown, expired, used, revoked or for another platform): %w", err)
		}
		return nil, fmt.Errorf("enrolling: %w", err)
	}
	chainPEM := []byte(resp.CertificateChain)
	if _, err := checkChain(chainPEM, key, time.Now()); err != nil {
		return nil, fmt.Errorf("the server's certificate is unusable: %w", err)
	}
	var interval time.Duration
	if resp.ReportInterval != "" {
		interval, _ = time.ParseDuration(resp.ReportInterval) // validated on decode
	}

	// The old identity goes only now that a new one is in hand; the identity file is written
	// last because its presence is what marks the device enrolled.
	if cfg.Force {
		if err := store.ResetEnrollment(); err != nil {
			return nil, err
		}
	}
	if err := store.SaveKey(key); err != nil {
		return nil, err
	}
	if err := store.WriteFile(state.CertFile, chainPEM); err != nil {
		return nil, err
	}
	if err := store.WriteFile(state.CAFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Raw})); err != nil {
		return nil, err
	}
	id := &state.Identity{
		DeviceID:       resp.DeviceID,
		ServerURL:      base,
		CAFingerprint:  rootpin.Fingerprint(ca),
		EnrolledAt:     time.Now().UTC(),
		ReportInterval: interval,
	}
	if err := store.SaveIdentity(id); err != nil {
		return nil, err
	}
	return id, nil
}

// fetchServerCA fetches GET /ca/root.pem and decides which CA to pin.
//
// With a fingerprint (want), the first connection cannot be verified yet: the served root is
// accepted only if its SHA-256 matches, and then the server's own TLS chain must verify against
// it. Without one, the connection must verify against the system roots; the pinned CA is the
// served root when it also issued the server's certificate, else the public root that did.
func fetchServerCA(ctx context.Context, base, host, want string, systemRoots *x509.CertPool, timeout time.Duration) (*x509.Certificate, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: systemRoots}
	if want != "" {
		// Verification happens below, against the root whose fingerprint the admin vouched for.
		cfg.InsecureSkipVerify = true
	}
	c := newClient(base, cfg)
	defer c.tr.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/ca/root.pem", nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		var verr *tls.CertificateVerificationError
		var uerr x509.UnknownAuthorityError
		if errors.As(err, &verr) || errors.As(err, &uerr) {
			return nil, fmt.Errorf("the server's TLS certificate is not trusted by this system's root CAs, so its CA cannot be pinned safely: "+
				"pass --ca-fingerprint with the SHA-256 of the server's root CA (ask the Hale administrator; "+
				"`openssl x509 -in root.pem -noout -fingerprint -sha256` on the server's /ca/root.pem): %w", err)
		}
		return nil, fmt.Errorf("fetching the server CA: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetching the server CA: %w", problem.Read(resp))
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, rootpin.MaxPEM+1))
	if err != nil {
		return nil, fmt.Errorf("fetching the server CA: %w", err)
	}
	if len(body) > rootpin.MaxPEM {
		return nil, errors.New("fetching the server CA: /ca/root.pem is too large")
	}
	root, err := rootpin.ParseRoot(body)
	if err != nil {
		return nil, err
	}
	if resp.TLS == nil || len(resp.TLS.PeerCertificates) == 0 {
		return nil, errors.New("fetching the server CA: no TLS peer certificate")
	}
	servedVerifies := rootpin.VerifyChain(resp.TLS.PeerCertificates, root, host) == nil

	if want != "" {
		got := rootpin.Fingerprint(root)
		if got != want {
			return nil, fmt.Errorf("the server's CA fingerprint is %s, not the expected %s: refusing to enroll "+
				"(wrong server, or something is intercepting the connection)", got, want)
		}
		if err := rootpin.VerifyChain(resp.TLS.PeerCertificates, root, host); err != nil {
			return nil, fmt.Errorf("the server's TLS certificate is not issued by the CA with the given fingerprint: %w", err)
		}
		return root, nil
	}
	if servedVerifies {
		return root, nil
	}
	chains := resp.TLS.VerifiedChains
	if len(chains) == 0 || len(chains[0]) == 0 {
		return nil, errors.New("the server's TLS chain could not be determined; pass --ca-fingerprint")
	}
	return chains[0][len(chains[0])-1], nil
}

// makeCSR returns a PEM CSR for key with an empty subject: the device does not know its ID
// before enrolling, and Hale's CA refuses a CSR that names anything but the device ID; it names
// the certificate itself.
func makeCSR(key *ecdsa.PrivateKey) (string, error) {
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		return "", fmt.Errorf("creating the certificate request: %w", err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})), nil
}

// checkChain parses an issued chain and checks that its leaf is for key and valid at now.
func checkChain(chainPEM []byte, key *ecdsa.PrivateKey, now time.Time) ([]*x509.Certificate, error) {
	certs, err := state.ParseChain(chainPEM)
	if err != nil {
		return nil, err
	}
	leaf := certs[0]
	pub, ok := leaf.PublicKey.(*ecdsa.PublicKey)
	if !ok || !pub.Equal(&key.PublicKey) {
		return nil, errors.New("the certificate is not for this device's key")
	}
	if now.After(leaf.NotAfter) {
		return nil, fmt.Errorf("the certificate expired at %s", leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	if len(leaf.ExtKeyUsage) > 0 {
		ok := false
		for _, u := range leaf.ExtKeyUsage {
			ok = ok || u == x509.ExtKeyUsageClientAuth || u == x509.ExtKeyUsageAny
		}
		if !ok {
			return nil, errors.New("the certificate is not valid for TLS client authentication")
		}
	}
	return certs, nil
}

// tlsCertificate builds the client certificate from a chain and its key.
func tlsCertificate(certs []*x509.Certificate, key *ecdsa.PrivateKey) *tls.Certificate {
	c := &tls.Certificate{PrivateKey: key, Leaf: certs[0]}
	for _, x := range certs {
		c.Certificate = append(c.Certificate, x.Raw)
	}
	return c
}
