// Package posture is the Go SDK a messaging backend uses to ask Hale whether a device may open a
// session, and to learn at once when the answer changes.
//
// It has four parts, each usable alone:
//
//   - Client asks the server's access API (/access/v1) for a device's live decision, caches it
//     briefly, and fails closed: no answer is a deny.
//   - Verifier checks posture tokens offline: short-lived ES256 JWTs the server gives a device,
//     bound to the device's certificate, verified against the server's key set; or, for the
//     organisation's messaging app (package mobile), bound to the app instance's key (cnf.jkt)
//     and presented with a DPoP proof of possession (RFC 9449) that VerifyWithProof checks. A
//     desktop app's tokens, which the laptop's agent gets for it (package desktop), have the same
//     shape and name the local user and executable in LocalApp.
//   - Receiver is the http.Handler the server pushes revocation events to (OpenID Shared
//     Signals / CAEP Security Event Tokens, RFC 8935); it drops cached decisions and revokes
//     tokens as they arrive.
//   - Gate, with Middleware (and the gRPC interceptors of package grpcgate, kept apart so an
//     HTTP-only backend does not link gRPC), refuses a session from a device that is
//     not allowed, with the reason codes, and hands the handler the device's Access.
//
// A backend that takes device mTLS and posture tokens:
//
//	client, err := posture.NewClient("https://hale.example.org:8443",
//		posture.WithRootCAsPEM(rootPEM), posture.WithBearerToken(os.Getenv("HALE_ACCESS_TOKEN")))
//	if err != nil {
//		return err
//	}
//	keys := client.Keys()
//	verifier := posture.NewVerifier(keys, posture.WithIssuer("https://hale.example.org:8443"))
//	gate := &posture.Gate{Verifier: verifier, Client: client}
//
//	mux := http.NewServeMux()
//	mux.Handle("POST /sessions", posture.Middleware(gate)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
//		access, _ := posture.FromContext(r.Context())
//		fmt.Fprintf(w, "welcome, device %s\n", access.DeviceID)
//	})))
//	mux.Handle("POST /ssf/events", posture.NewReceiver(keys, "https://backend.example.org/ssf/events",
//		"https://hale.example.org:8443", posture.WithClient(client), posture.WithVerifier(verifier)))
//
// The backend must see the device's client certificate for a token to count (its TLS
// listener asks for one: tls.RequestClientCert or tls.VerifyClientCertIfGiven), because a token
// is bound to it: a token copied off a device is worthless without the device's key. The
// messaging app has no device certificate: its requests carry "Authorization: DPoP <token>" and
// a "DPoP" proof header, which Middleware checks against Gate.PublicURL and the request's path.
//
// Every refusal carries a stable reason code (the Reason* constants, plus the policy's own such
// as passcode_missing), so a backend can tell the user what to fix.
package posture
