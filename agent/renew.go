package agent

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/halemdm/hale/agent/state"
	"github.com/halemdm/hale/api"
)

// renewAt is when a certificate is renewed: two thirds into its lifetime, leaving a third for
// retries while the server is unreachable.
func renewAt(leaf *x509.Certificate) time.Time {
	life := leaf.NotAfter.Sub(leaf.NotBefore)
	return leaf.NotBefore.Add(life * 2 / 3)
}

// renewLoop renews the device certificate at two thirds of its lifetime and retries with
// backoff on failure.
func (a *Agent) renewLoop(ctx context.Context) {
	failures := 0
	for {
		leaf := a.cert.Load().Leaf
		wait := time.Until(renewAt(leaf))
		if failures > 0 {
			wait = a.backoff(failures)
		}
		if !sleep(ctx, wait) {
			return
		}
		if err := a.renew(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			failures++
			level := "certificate renewal failed; retrying"
			if time.Now().After(leaf.NotAfter) {
				level = "certificate expired and renewal failed: re-enroll with `mdmagent enroll --force` if this persists"
			}
			a.log.Warn(level, "err", err, "not_after", leaf.NotAfter)
			a.emit(Event{Kind: "renew-failed", Err: err})
			continue
		}
		failures = 0
		a.emit(Event{Kind: "renewed"})
	}
}

// renew asks the server to certify the device key again and swaps the new certificate in. The
// key stays the same (the contract allows it), so a crash can never separate key and certificate.
func (a *Agent) renew(ctx context.Context) error {
	csr, err := makeCSR(a.key)
	if err != nil {
		return err
	}
	var resp renewResponse
	if err := a.client.do(ctx, a.requestTimeout, http.MethodPost, "/agent/v1/renew", api.AgentRenewRequest{CSR: csr}, &resp); err != nil {
		return fmt.Errorf("renewing the certificate: %w", err)
	}
	chainPEM := []byte(resp.CertificateChain)
	certs, err := checkChain(chainPEM, a.key, time.Now())
	if err != nil {
		return fmt.Errorf("the renewed certificate is unusable: %w", err)
	}
	if old := a.cert.Load().Leaf; !certs[0].NotAfter.After(old.NotAfter) {
		return errors.New("the renewed certificate does not outlive the current one")
	}
	if err := a.store.WriteFile(state.CertFile, chainPEM); err != nil {
		return err
	}
	a.cert.Store(tlsCertificate(certs, a.key))
	// Kept-alive connections still present the old certificate.
	a.client.tr.CloseIdleConnections()
	a.log.Info("certificate renewed", "not_after", certs[0].NotAfter)
	return nil
}
