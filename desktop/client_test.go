//go:build linux || darwin

package desktop

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/halemdm/hale/agent/localproto"
)

// fakeAgent answers a nonce, checks the token request's proof over it with the real check, and
// answers refusal.
func fakeAgent(t *testing.T, refusal *localproto.Error) (string, chan localproto.JWK) {
	path := filepath.Join(t.TempDir(), "agent.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	keys := make(chan localproto.JWK, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		r, enc := bufio.NewReader(c), json.NewEncoder(c)
		var req localproto.Request
		line, _ := r.ReadBytes('\n')
		if json.Unmarshal(line, &req); req.Op != localproto.OpNonce {
			return
		}
		enc.Encode(localproto.Response{Nonce: "n-1"})
		line, _ = r.ReadBytes('\n')
		json.Unmarshal(line, &req)
		key, e := localproto.VerifyProof(req.Proof, "n-1", time.Now(), time.Minute)
		if e != nil {
			enc.Encode(localproto.Response{Error: e})
			return
		}
		keys <- key
		enc.Encode(localproto.Response{Error: refusal})
	}()
	return path, keys
}

func TestTokenRefusalAndProof(t *testing.T) {
	path, keys := fakeAgent(t, &localproto.Error{Code: localproto.CodeDeviceDenied, Reasons: []string{"device_locked"}})
	key, _ := GenerateKey()
	c, err := New(key, WithAddress(path))
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Token(context.Background())
	var le *localproto.Error
	if !errors.As(err, &le) || le.Code != localproto.CodeDeviceDenied || le.Reasons[0] != "device_locked" {
		t.Fatalf("refusal: %v", err)
	}
	got := <-keys
	if want, _ := c.Thumbprint(); got.Thumbprint() != want {
		t.Fatalf("the agent saw key %s, the client's is %s", got.Thumbprint(), want)
	}
}

func TestNoAgent(t *testing.T) {
	key, _ := GenerateKey()
	c, _ := New(key, WithAddress(filepath.Join(t.TempDir(), "none.sock")))
	if _, err := c.Token(context.Background()); err == nil || !strings.Contains(err.Error(), "reaching the Hale agent") {
		t.Fatalf("no agent: %v", err)
	}
	rk, _ := rsa.GenerateKey(rand.Reader, 2048)
	if _, err := New(rk); err == nil {
		t.Fatal("an RSA key was accepted")
	}
	if _, err := New(nil); err == nil {
		t.Fatal("no key was accepted")
	}
}
