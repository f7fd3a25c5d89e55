package mdmserver_test

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/halemdm/hale/agent"
	"github.com/halemdm/hale/agent/localapi"
	"github.com/halemdm/hale/agent/localproto"
	"github.com/halemdm/hale/agent/state"
	"github.com/halemdm/hale/api"
	"github.com/halemdm/hale/desktop"
	"github.com/halemdm/hale/mdmserver/access"
	"github.com/halemdm/hale/policies"
	"github.com/halemdm/hale/posture"
)

// realAgent enrolls the agent package's real agent with the test server (pinning its root CA
// by fingerprint, as `mdmagent enroll --ca-fingerprint` does) and runs it with a collector that
// reports an encrypted Linux disk, and the agent's local endpoint on a socket serving this test
// binary for the current user. It answers the agent and the socket path.
func (env *testEnv) realAgent() (*agent.Agent, string) {
	t := env.t
	t.Helper()
	resp, err := env.Client.Get(env.URL + "/ca/root.pem")
	if err != nil {
		t.Fatal(err)
	}
	rootPEM, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	block, _ := pem.Decode(rootPEM)
	if block == nil {
		t.Fatal("no root CA")
	}
	if _, err := x509.ParseCertificate(block.Bytes); err != nil {
		t.Fatal(err)
	}
	fp := sha256.Sum256(block.Bytes)
	store, err := state.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	e := env.createEnrollment("agent")
	ctx := t.Context()
	if _, err := agent.Enroll(ctx, store, agent.EnrollConfig{ServerURL: env.URL, Token: e.Token, CAFingerprint: hex.EncodeToString(fp[:]),
		Facts: api.AgentFacts{Hostname: "ward-laptop-7", OS: "linux"}}); err != nil {
		t.Fatalf("enroll: %v", err)
	}
	collector := func(context.Context) (*policies.Posture, []agent.CollectorError) {
		now := time.Now()
		return &policies.Posture{Platform: policies.PlatformLinux,
			DiskEncrypted: policies.Observe(true, policies.ProvenanceAgent, now),
			SwapEncrypted: policies.Observe(true, policies.ProvenanceAgent, now)}, nil
	}
	a, err := agent.New(store, collector, agent.WithWipeRoots(t.TempDir()), agent.WithPollWait(time.Second),
		agent.WithBackoff(50*time.Millisecond, 200*time.Millisecond), agent.WithRequestTimeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	exe, _ := os.Executable()
	exe, _ = filepath.EvalSymlinks(exe)
	srv, err := localapi.New(a, localapi.WithAllowedExecutables(exe), localapi.WithAllowedUsers(strconv.Itoa(os.Getuid())),
		localapi.WithSignedInCheck(nil), localapi.WithIssueTimeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "run", "agent.sock")
	ln, err := localapi.Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	ran, served := make(chan error, 1), make(chan error, 1)
	go func() { ran <- a.Run(runCtx) }()
	go func() { served <- srv.Serve(runCtx, ln) }()
	t.Cleanup(func() { cancel(); <-ran; <-served })
	return a, sock
}

// The desktop messaging app on a laptop, end to end in one process with the real agent: the
// app asks the agent's socket for a token bound to its key, opens a session with the backend's
// offline verification; a copy of the token without the key, and a replayed proof, are
// refused. Then the device is wiped: the agent refuses the next token (fail closed, whatever
// the server's answer looks like), and the SET the backend polls names the device and revokes
// the token it holds.
func TestDesktopAppThroughAgent(t *testing.T) {
	env := newTestEnv(t)
	env.compliantAgent() // applies and assigns the agent policy
	accessTok := env.token("access")
	stream := env.stream(accessTok, `{"aud":"messaging"}`)
	a, sock := env.realAgent()
	env.waitAccess(accessTok, a.DeviceID(), "allowed", func(x access.Answer) bool { return x.Allow })

	key, _ := desktop.GenerateKey()
	app, err := desktop.New(key, desktop.WithAddress(sock))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	tok, err := app.Token(ctx)
	if err != nil {
		t.Fatalf("token through the agent: %v", err)
	}
	exe, _ := os.Executable()
	exe, _ = filepath.EvalSymlinks(exe)
	if tok.DeviceID != a.DeviceID() || tok.Executable != exe {
		t.Fatalf("token for %s by %s", tok.DeviceID, tok.Executable)
	}

	v := env.desktopVerifier()
	proof, err := app.Proof("POST", sessionsURL, tok.Token)
	if err != nil {
		t.Fatal(err)
	}
	claims, err := v.VerifyWithProof(ctx, tok.Token, proof, "POST", sessionsURL)
	if err != nil {
		t.Fatalf("the backend refused the desktop app's session: %v", err)
	}
	jkt, _ := app.Thumbprint()
	if claims.Subject != a.DeviceID() || claims.Confirm.JKT != jkt || claims.LocalApp == nil ||
		claims.LocalApp.UID != strconv.Itoa(os.Getuid()) || claims.LocalApp.Executable != exe {
		t.Fatalf("claims %+v local app %+v", claims, claims.LocalApp)
	}
	if _, err := v.VerifyWithProof(ctx, tok.Token, proof, "POST", sessionsURL); !errors.Is(err, posture.ErrProof) {
		t.Fatalf("replayed proof: %v", err)
	}
	thiefKey, _ := desktop.GenerateKey()
	thief, _ := desktop.New(thiefKey, desktop.WithAddress(sock))
	stolen, _ := thief.Proof("POST", sessionsURL, tok.Token)
	if _, err := v.VerifyWithProof(ctx, tok.Token, stolen, "POST", sessionsURL); !errors.Is(err, posture.ErrProof) {
		t.Fatalf("the token with another key's proof: %v", err)
	}

	// The Electron/Node client of examples/desktopapp/node does the same in JavaScript, when
	// Node is installed: its executable is added to the allow list of a second endpoint.
	if node, err := exec.LookPath("node"); err == nil {
		node, _ = filepath.EvalSymlinks(node)
		nodeSock := filepath.Join(t.TempDir(), "run", "agent.sock")
		ep, _ := localapi.New(a, localapi.WithAllowedExecutables(node), localapi.WithAllowedUsers(strconv.Itoa(os.Getuid())),
			localapi.WithSignedInCheck(nil))
		ln, err := localapi.Listen(nodeSock)
		if err != nil {
			t.Fatal(err)
		}
		go ep.Serve(ctx, ln)
		out, err := exec.CommandContext(ctx, node, "../examples/desktopapp/node/hale.js", nodeSock, sessionsURL).Output()
		var got struct{ Token, Proof, Executable string }
		if err != nil || json.Unmarshal(out, &got) != nil || got.Executable != node {
			t.Fatalf("node client: %v %s", err, out)
		}
		if c, err := v.VerifyWithProof(ctx, got.Token, got.Proof, "POST", sessionsURL); err != nil || c.LocalApp.Executable != node {
			t.Fatalf("the Node client's token and proof: %v", err)
		}
	} else if os.Getenv("CI") != "" {
		t.Fatal("CI installs node (.ci/run): the Node client must be exercised")
	}

	// Wipe. The agent carries it out (nothing under its wipe roots), the device is wiped.
	if code := env.call("POST", "/api/v1/devices/"+a.DeviceID()+"/wipe", env.token("security"),
		[]byte(`{"reason":"laptop stolen","mode":"selective"}`), nil); code != 202 {
		t.Fatalf("wipe: %d", code)
	}
	env.waitAccess(accessTok, a.DeviceID(), "denied after the wipe", func(x access.Answer) bool { return !x.Allow })
	_, err = app.Token(ctx)
	var le *localproto.Error
	if !errors.As(err, &le) || (le.Code != localproto.CodeDeviceDenied && le.Code != localproto.CodeServerUnreachable) {
		t.Fatalf("token after the wipe: %v", err)
	}

	// The backend's receiver gets the SETs naming the device; the token it holds is revoked.
	rx := posture.NewReceiver(posture.StaticJWKS(mustJWKS(t, env)), "messaging", env.PublicURL, posture.WithVerifier(v))
	named := false
	for deadline := time.Now().Add(10 * time.Second); !named && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		_, sets := env.pollSETs(accessTok, stream.StreamID, `{"returnImmediately":true}`)
		for _, s := range sets {
			if err := rx.Deliver(ctx, s); err != nil {
				t.Fatalf("deliver: %v", err)
			}
			named = named || setNames(t, s, a.DeviceID())
		}
	}
	if !named {
		t.Fatal("no SET named the wiped device")
	}
	again, _ := app.Proof("POST", sessionsURL, tok.Token)
	if _, err := v.VerifyWithProof(ctx, tok.Token, again, "POST", sessionsURL); !errors.Is(err, posture.ErrRevoked) {
		t.Fatalf("the desktop token after the wipe's event: %v", err)
	}
}

func mustJWKS(t *testing.T, env *testEnv) []byte {
	resp, err := env.Client.Get(env.URL + "/access/v1/jwks.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return b
}

// setNames reports whether the SET's subject is the device.
func setNames(t *testing.T, set, deviceID string) bool {
	parts := strings.Split(set, ".")
	if len(parts) != 3 {
		t.Fatalf("SET %q", set)
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims posture.SETClaims
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatal(err)
	}
	return claims.SubID.DeviceID() == deviceID && slices.Contains([]string{"opaque", "complex"}, claims.SubID.Format)
}
