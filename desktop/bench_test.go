package desktop_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/halemdm/hale/agent"
	"github.com/halemdm/hale/agent/localapi"
	"github.com/halemdm/hale/agent/localproto"
	"github.com/halemdm/hale/agent/state"
	"github.com/halemdm/hale/api"
	"github.com/halemdm/hale/desktop"
	"github.com/halemdm/hale/internal/servertest"
	"github.com/halemdm/hale/policies"
)

// BenchmarkTokenThroughSocket measures what the local endpoint adds to a desktop app's token:
// per iteration, the agent's own request to a real in-process server (POST
// /agent/v1/app-token over mutual TLS, the baseline) and then the whole path a desktop app
// takes (dial the socket, nonce, sign a proof, peer credentials and /proc, proof check, the
// same server request, answer), interleaved so both see the same machine. It reports both
// and their ratio.
func BenchmarkTokenThroughSocket(b *testing.B) {
	srv := servertest.Start(b)
	srv.Call("PUT", "/api/v1/policies/agents", srv.Admin, "reporting:\n  max_age: 15m\ngrace: 1h\n", 200, nil)
	srv.Call("PUT", "/api/v1/assignments", srv.Admin, `{"target":{"kind":"default"},"policy":"agents"}`, 200, nil)
	var e struct{ Token string }
	srv.Call("POST", "/api/v1/enrollments", srv.Admin, `{"owner":"bench","group":"icu","platform":"agent","ttl":"1h"}`, 201, &e)
	resp, err := srv.Client.Get(srv.URL + "/ca/root.pem")
	if err != nil {
		b.Fatal(err)
	}
	rootPEM, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	block, _ := pem.Decode(rootPEM)
	fp := sha256.Sum256(block.Bytes)
	store, err := state.Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	ctx := b.Context()
	if _, err := agent.Enroll(ctx, store, agent.EnrollConfig{ServerURL: srv.URL, Token: e.Token, CAFingerprint: hex.EncodeToString(fp[:]),
		Facts: api.AgentFacts{Hostname: "bench", OS: "linux"}}); err != nil {
		b.Fatal(err)
	}
	collector := func(context.Context) (*policies.Posture, []agent.CollectorError) {
		return &policies.Posture{Platform: policies.PlatformLinux, DiskEncrypted: policies.Observe(true, policies.ProvenanceAgent, time.Now())}, nil
	}
	a, err := agent.New(store, collector, agent.WithWipeRoots(b.TempDir()))
	if err != nil {
		b.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	go a.Run(runCtx)

	exe, _ := os.Executable()
	exe, _ = filepath.EvalSymlinks(exe)
	ep, _ := localapi.New(a, localapi.WithAllowedExecutables(exe), localapi.WithAllowedUsers(strconv.Itoa(os.Getuid())), localapi.WithSignedInCheck(nil))
	sock := filepath.Join(b.TempDir(), "run", "agent.sock")
	ln, err := localapi.Listen(sock)
	if err != nil {
		b.Fatal(err)
	}
	go ep.Serve(runCtx, ln)

	key, _ := desktop.GenerateKey()
	app, _ := desktop.New(key, desktop.WithAddress(sock))
	jwk, _ := localproto.PublicJWK(&key.PublicKey)
	req := localapi.TokenRequest{Key: jwk, Peer: localapi.Peer{UID: "1000", User: "bench", Executable: exe, PID: os.Getpid()}}
	// Wait for the first report to make the device allowed.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if _, err := a.IssueAppToken(ctx, req); err == nil {
			break
		} else if time.Now().After(deadline) {
			b.Fatalf("the device never became allowed: %v", err)
		}
	}

	var direct, socket time.Duration
	for b.Loop() {
		t0 := time.Now()
		if _, err := a.IssueAppToken(ctx, req); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if _, err := app.Token(ctx); err != nil {
			b.Fatal(err)
		}
		direct, socket = direct+t1.Sub(t0), socket+time.Since(t1)
	}
	n := float64(b.N)
	b.ReportMetric(float64(direct.Nanoseconds())/n, "direct-ns/token")
	b.ReportMetric(float64(socket.Nanoseconds())/n, "socket-ns/token")
	b.ReportMetric(float64(socket)/float64(direct), "socket/direct")
}
