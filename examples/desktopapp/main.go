// Command desktopapp is the smallest desktop messaging app guarded by Hale: it gets a posture
// token bound to its own key from the laptop's agent (package desktop, over the agent's local
// socket or pipe) and opens a session on the messaging backend (examples/backend) with it and
// a DPoP proof.
//
//	go run ./examples/desktopapp --backend https://127.0.0.1:9443 --backend-ca backend-ca.pem
//
// The agent serves it only if its executable is on the agent's allow list
// (`mdmagent run --app-allow /path/to/desktopapp`) and its user is signed in at the computer
// (or named with --app-user). It prints the backend's answer, or why there is no session, and
// exits 1 then.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/halemdm/hale/desktop"
)

func main() {
	backend := flag.String("backend", "https://127.0.0.1:9443", "the messaging backend's base URL")
	backendCA := flag.String("backend-ca", "", "PEM file of the CA of the backend's TLS certificate (default: system roots)")
	socket := flag.String("socket", desktop.DefaultAddress(), "the agent's socket path or named pipe")
	flag.Parse()
	if err := run(*backend, *backendCA, *socket); err != nil {
		fmt.Fprintln(os.Stderr, "desktopapp:", err)
		os.Exit(1)
	}
}

func run(backend, caFile, socket string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// A real app keeps this key in the OS keystore and reuses it; a new one per run is fine too.
	key, err := desktop.GenerateKey()
	if err != nil {
		return err
	}
	app, err := desktop.New(key, desktop.WithAddress(socket))
	if err != nil {
		return err
	}
	tok, err := app.Token(ctx)
	if err != nil {
		return fmt.Errorf("no posture token: %w", err)
	}
	url := strings.TrimRight(backend, "/") + "/sessions"
	proof, err := app.Proof(http.MethodPost, url, tok.Token)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "DPoP "+tok.Token)
	req.Header.Set("DPoP", proof)
	tlsConfig := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return err
		}
		tlsConfig.RootCAs = x509.NewCertPool()
		if !tlsConfig.RootCAs.AppendCertsFromPEM(pem) {
			return errors.New("no certificate in " + caFile)
		}
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsConfig}, Timeout: 15 * time.Second}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("the backend refused the session: %d %s", resp.StatusCode, body)
	}
	fmt.Printf("%s", body)
	return nil
}
