// Command backend is a minimal messaging backend guarded by Hale: it opens a session only for a
// device Hale allows, and drops sessions when Hale pushes a revocation event.
//
//	go run ./examples/backend --server https://127.0.0.1:8443 --ca root.pem --token $TOKEN
//
// where root.pem is the server's root CA (GET /ca/root.pem) and $TOKEN an API token of role access.
//
// Devices call POST /sessions over mTLS with their device certificate, optionally with a posture
// token ("Authorization: Posture <jwt>"). The organisation's messaging app, which has no device
// certificate, calls it with the posture token POST /app/v1/token gave its instance
// ("Authorization: DPoP <jwt>") and a DPoP proof signed by the instance's key (header DPoP,
// naming --public-url's host and /sessions). A desktop messaging app on a laptop does the same
// with the token the laptop's agent got for its key (package desktop). Hale pushes events to
// POST /ssf/events.
package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/halemdm/hale/posture"
	"github.com/halemdm/hale/remediation"
)

// config is what the flags set.
type config struct {
	server, caFile, token, listen string
	certFile, keyFile, clientCA   string
	issuer, audience, pushAuth    string
	publicURL                     string
	live, trustDeviceID           bool
	helpDesk                      remediation.HelpDesk
}

func main() {
	var c config
	flag.StringVar(&c.server, "server", "", "Hale server URL (https://host:port)")
	flag.StringVar(&c.caFile, "ca", "", "PEM file with the Hale server's root CA (default: system roots)")
	flag.StringVar(&c.token, "token", os.Getenv("HALE_ACCESS_TOKEN"), "API token with role access (or HALE_ACCESS_TOKEN)")
	flag.StringVar(&c.listen, "listen", "127.0.0.1:9443", "address to serve on")
	flag.StringVar(&c.certFile, "tls-cert", "", "TLS certificate PEM for the listener (default: self-signed, in memory)")
	flag.StringVar(&c.keyFile, "tls-key", "", "TLS key PEM for the listener")
	flag.StringVar(&c.clientCA, "client-ca", "", "PEM file of CAs that issue device certificates (default: accept any, tokens bind to it)")
	flag.StringVar(&c.issuer, "issuer", "", "iss of Hale's tokens and events (default: --server)")
	flag.StringVar(&c.audience, "audience", "", "aud of the events Hale pushes here (default: https://LISTEN/ssf/events)")
	flag.StringVar(&c.pushAuth, "push-authorization", os.Getenv("HALE_PUSH_AUTHORIZATION"), "Authorization header value Hale's pushes must carry")
	flag.StringVar(&c.publicURL, "public-url", "",
		"scheme and host the messaging app reaches this backend at, which its DPoP proofs name (default: https://LISTEN)")
	flag.StringVar(&c.helpDesk.Name, "help-desk", "", "whom a denial's remediation tells the user to call (default: \"your organisation's help desk\")")
	flag.StringVar(&c.helpDesk.Phone, "help-desk-phone", "", "the help desk's phone number, for the remediation")
	flag.BoolVar(&c.live, "live", false, "confirm every posture token with a live decision from Hale")
	flag.BoolVar(&c.trustDeviceID, "trust-device-id", false,
		"accept the X-Device-ID header: only behind a proxy that authenticates devices, since a client may claim any ID")
	flag.Parse()
	if err := run(c); err != nil {
		slog.Error("backend", "err", err)
		os.Exit(1)
	}
}

func run(c config) error {
	if c.server == "" {
		return errors.New("--server is required")
	}
	if c.issuer == "" {
		c.issuer = c.server
	}
	if c.publicURL == "" {
		c.publicURL = "https://" + c.listen
	}
	if c.audience == "" {
		c.audience = "https://" + c.listen + "/ssf/events"
	}
	opts := []posture.ClientOption{posture.WithBearerToken(c.token)}
	if c.caFile != "" {
		pem, err := os.ReadFile(c.caFile)
		if err != nil {
			return err
		}
		opts = append(opts, posture.WithRootCAsPEM(pem))
	}
	client, err := posture.NewClient(c.server, opts...)
	if err != nil {
		return err
	}
	keys := client.Keys()
	verifier := posture.NewVerifier(keys, posture.WithIssuer(c.issuer))
	// A denial is a 403 problem whose reasons come with grace_until and the remediation of each
	// in the request's Accept-Language, which the messaging app shows as is.
	gate := &posture.Gate{Verifier: verifier, Client: client, RequireLiveDecision: c.live, TrustDeviceID: c.trustDeviceID, Logger: slog.Default(),
		PublicURL: c.publicURL, HelpDesk: c.helpDesk}
	receiver := posture.NewReceiver(keys, c.audience, c.issuer,
		posture.WithClient(client), posture.WithVerifier(verifier), posture.WithAuthorization(c.pushAuth),
		posture.WithOnEvent(func(_ context.Context, set posture.SETClaims, typ string, ev posture.CAEPEvent) {
			// A real backend would close the device's open sessions here.
			slog.Info("hale event", "type", typ, "device", set.SubID.ID, "status", ev.CurrentStatus,
				"reason", ev.ReasonCode, "jti", set.ID, "break_glass", ev.BreakGlass != nil, "grace_until", ev.GraceUntil)
		}))

	mux := http.NewServeMux()
	mux.Handle("POST /sessions", posture.Middleware(gate)(http.HandlerFunc(openSession)))
	mux.Handle("POST /ssf/events", receiver)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })

	tlsConfig, err := listenerTLS(c.certFile, c.keyFile, c.clientCA)
	if err != nil {
		return err
	}
	srv := &http.Server{Addr: c.listen, Handler: mux, TLSConfig: tlsConfig, ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
	}()
	slog.Info("backend listening", "addr", "https://"+c.listen, "hale", c.server, "audience", c.audience)
	if err := srv.ListenAndServeTLS("", ""); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// openSession runs only for allowed devices: the middleware put what it learned in the context.
func openSession(w http.ResponseWriter, r *http.Request) {
	access, _ := posture.FromContext(r.Context())
	id := make([]byte, 16)
	_, _ = rand.Read(id)
	// A messaging app session: its token was bound to the app instance's key, proven by DPoP.
	// A desktop app's session: its token came through the laptop's agent, which names the
	// local user and the executable (local_app); it is bound to the app's key the same way.
	app := ""
	var local *posture.LocalApp
	if access.Claims != nil {
		app, local = access.Claims.AppInstance, access.Claims.LocalApp
	}
	slog.Info("session opened", "device", access.DeviceID, "in_grace", access.Decision.InGrace, "by_token", access.Claims != nil,
		"app_instance", app, "local_app", local, "break_glass", access.Decision.BreakGlass != nil)
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"session": hex.EncodeToString(id), "device_id": access.DeviceID, "app_instance": app, "local_app": local,
		"in_grace": access.Decision.InGrace, "warnings": access.Decision.Reasons,
		// An emergency access use: the session must end by its expires_at (Hale also sends
		// session-revoked then), and the app may show that it is one.
		"break_glass": access.Decision.BreakGlass, "grace_until": access.Decision.GraceUntil, "remediation": access.Decision.Remediation,
	})
}

// listenerTLS asks every client for its certificate: posture tokens are bound to it, and without
// a token it is how Hale recognizes the device.
func listenerTLS(certFile, keyFile, clientCA string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ClientAuth: tls.RequestClientCert}
	if clientCA != "" {
		pem, err := os.ReadFile(clientCA)
		if err != nil {
			return nil, err
		}
		cfg.ClientCAs = x509.NewCertPool()
		if !cfg.ClientCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("no certificate in %s", clientCA)
		}
		cfg.ClientAuth = tls.VerifyClientCertIfGiven
	}
	var cert tls.Certificate
	var err error
	if certFile != "" {
		cert, err = tls.LoadX509KeyPair(certFile, keyFile)
	} else {
		cert, err = selfSigned()
	}
	cfg.Certificates = []tls.Certificate{cert}
	return cfg, err
}

func selfSigned() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "hale example backend"},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(30 * 24 * time.Hour),
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	slog.Warn("serving a self-signed certificate; use --tls-cert/--tls-key in production")
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}
