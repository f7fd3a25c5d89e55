package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"sync"

	"github.com/spf13/cobra"

	"github.com/halemdm/hale/internal/rootpin"
)

func (a *app) loginCommand() *cobra.Command {
	var fingerprint string
	cmd := &cobra.Command{
		Use:   "login --server URL --token TOKEN [--ca-file PEM | --ca-fingerprint HEX]",
		Short: "Check a token and save it, with the server's pinned CA, as a profile",
		Long: `login checks the token against the server, fetches the server's CA root (/ca/root.pem) and
pins it when it matches --ca-fingerprint (the SHA-256 of the root certificate's DER, hex, colons
optional; mdmserver prints it) or a certificate in --ca-file, then saves server, token and root as
a profile (--profile, default "default") in the profile file, mode 0600. Without either flag the
server's certificate must chain to a system root and nothing is pinned.`,
		Args: cobra.NoArgs,
		RunE: runE(func(cmd *cobra.Command, _ []string) error {
			return a.login(cmd.Context(), fingerprint)
		}),
	}
	cmd.Flags().StringVar(&fingerprint, "ca-fingerprint", "", "SHA-256 of the server's root CA certificate (hex, colons optional)")
	return cmd
}

func (a *app) login(ctx context.Context, fingerprint string) error {
	server := firstNonEmpty(a.server, a.getenv("HALE_SERVER"))
	token := firstNonEmpty(a.token, a.getenv("HALE_TOKEN"))
	if server == "" || token == "" {
		return usagef("login needs --server and --token (or HALE_SERVER and HALE_TOKEN)")
	}
	server, err := normalizeServer(server)
	if err != nil {
		return err
	}
	caFile := firstNonEmpty(a.caFile, a.getenv("HALE_CA_FILE"))
	if caFile != "" && fingerprint != "" {
		return usagef("give --ca-file or --ca-fingerprint, not both")
	}

	var rootPEM []byte
	switch {
	case fingerprint != "":
		want, err := rootpin.ParseFingerprint(fingerprint)
		if err != nil {
			return usageError{err}
		}
		if rootPEM, err = a.fetchRootByFingerprint(ctx, server, want); err != nil {
			return err
		}
	case caFile != "":
		pool, certs, err := readCAFile(caFile)
		if err != nil {
			return err
		}
		if rootPEM, err = a.fetchRootFromCAFile(ctx, server, pool, certs); err != nil {
			return err
		}
	}
	var roots *x509.CertPool
	if rootPEM != nil {
		roots, _, _ = parsePEMCerts(rootPEM)
	}

	// The token: 401 means it is not valid; 403 means it is valid but its role may not list
	// devices (an access or auditor-less token), which is still a login.
	c := &client{base: server, token: token, http: a.httpClient(newTransport(roots))}
	note := ""
	if err := c.do(ctx, http.MethodGet, "/api/v1/devices?limit=1", nil, nil); isStatus(err, http.StatusForbidden) {
		note = " (this token's role may not list devices)"
	} else if err != nil {
		return err
	}

	path, err := a.configPath()
	if err != nil {
		return err
	}
	cf, err := loadConfig(path)
	if err != nil {
		return err
	}
	name := firstNonEmpty(a.profile, a.getenv("HALE_PROFILE"), "default")
	cf.Profiles[name] = &profile{Server: server, Token: token, RootPEM: string(rootPEM)}
	cf.Current = name
	if err := cf.save(path); err != nil {
		return err
	}
	pinned := "no CA pinned: the server's certificate must chain to a system root"
	if rootPEM != nil {
		_, certs, _ := parsePEMCerts(rootPEM)
		pinned = "CA pinned: " + certs[0].Subject.CommonName + " (SHA-256 " + rootpin.Fingerprint(certs[0]) + ")"
	}
	fmt.Fprintf(a.stdout, "logged in to %s as profile %q%s\n%s\nsaved to %s\n", server, name, note, pinned, path)
	return nil
}

// fetchRootByFingerprint trusts the server on first use: it fetches /ca/root.pem without
// verifying the connection, accepts the root only if its SHA-256 is want, and then checks that
// the certificate the server presented chains to that root for the server's name. Only then is
// anything sent that matters (the token goes later, over a verified connection).
func (a *app) fetchRootByFingerprint(ctx context.Context, server, want string) ([]byte, error) {
	var (
		mu    sync.Mutex
		peers []*x509.Certificate
	)
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{
		MinVersion:         tls.VersionTLS12,
		InsecureSkipVerify: true, // verified below against the fingerprinted root
		VerifyConnection: func(cs tls.ConnectionState) error {
			mu.Lock()
			peers = cs.PeerCertificates
			mu.Unlock()
			return nil
		},
	}
	c := &client{base: server, http: a.httpClient(tr)}
	body, err := fetchRootPEM(ctx, c)
	if err != nil {
		return nil, err
	}
	root, err := rootpin.ParseRoot(body)
	if err != nil {
		return nil, err
	}
	if got := rootpin.Fingerprint(root); got != want {
		return nil, verifyError{fmt.Errorf("the server's CA root has SHA-256 %s, not the %s you gave: not pinned (wrong server, or someone in between)", got, want)}
	}
	mu.Lock()
	chain := peers
	mu.Unlock()
	if err := verifyPeer(chain, root, server); err != nil {
		return nil, verifyError{err}
	}
	return pemOf(root), nil
}

// fetchRootFromCAFile fetches /ca/root.pem over a connection verified with the CA file and
// accepts it only if it is one of the file's certificates.
func (a *app) fetchRootFromCAFile(ctx context.Context, server string, pool *x509.CertPool, certs []*x509.Certificate) ([]byte, error) {
	body, err := fetchRootPEM(ctx, &client{base: server, http: a.httpClient(newTransport(pool))})
	if err != nil {
		return nil, err
	}
	root, err := rootpin.ParseRoot(body)
	if err != nil {
		return nil, err
	}
	for _, c := range certs {
		if bytes.Equal(c.Raw, root.Raw) {
			return pemOf(root), nil
		}
	}
	return nil, verifyError{fmt.Errorf("the server's CA root (SHA-256 %s) is not in the CA file: not pinned", rootpin.Fingerprint(root))}
}

func fetchRootPEM(ctx context.Context, c *client) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	resp, err := c.open(ctx, call{method: http.MethodGet, path: "/ca/root.pem"})
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return readLimited(resp.Body, "/ca/root.pem", rootpin.MaxPEM)
}

func pemOf(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

// verifyPeer checks that the chain the server presented leads to root and names the server.
func verifyPeer(chain []*x509.Certificate, root *x509.Certificate, server string) error {
	u, err := url.Parse(server)
	if err != nil {
		return err
	}
	host := u.Hostname()
	if ip := net.ParseIP(host); ip != nil {
		host = ip.String()
	}
	if err := rootpin.VerifyChain(chain, root, host); err != nil {
		return fmt.Errorf("the server's certificate does not chain to the fingerprinted root for %s: %w", host, err)
	}
	return nil
}
