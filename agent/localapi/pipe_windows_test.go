package localapi

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/Microsoft/go-winio"
	"golang.org/x/sys/windows"

	"github.com/halemdm/hale/agent/localproto"
)

// Windows itself parses the pipe's SDDL into a protected DACL (the value test is sddl_test.go).
func TestPipeSDDLParses(t *testing.T) {
	sd, err := windows.SecurityDescriptorFromString(PipeSDDL)
	if err != nil {
		t.Fatal(err)
	}
	control, _, err := sd.Control()
	if err != nil {
		t.Fatal(err)
	}
	if control&windows.SE_DACL_PROTECTED == 0 {
		t.Fatal("the DACL is not protected")
	}
	if _, _, err := sd.DACL(); err != nil {
		t.Fatal(err)
	}
}

type pipeIssuer struct{ got chan TokenRequest }

func (p pipeIssuer) IssueAppToken(_ context.Context, req TokenRequest) (Token, error) {
	p.got <- req
	return Token{Token: "h.c.s", TokenType: "posture+jwt", ExpiresAt: time.Now().Add(time.Minute), DeviceID: "d_1"}, nil
}

// On a real pipe the agent sees this process, its user's SID and its executable, and serves it.
func TestPipeEndToEnd(t *testing.T) {
	exe, _ := os.Executable()
	exe, _ = filepath.EvalSymlinks(exe)
	tok := windows.GetCurrentProcessToken()
	tu, err := tok.GetTokenUser()
	if err != nil {
		t.Fatal(err)
	}
	sid := tu.User.Sid.String()
	name := fmt.Sprintf(`\\.\pipe\hale-test-%d`, time.Now().UnixNano())
	ln, err := Listen(name)
	if err != nil {
		t.Fatal(err)
	}
	iss := pipeIssuer{got: make(chan TokenRequest, 1)}
	s, err := New(iss, WithAllowedExecutables(exe), WithAllowedUsers(sid), WithSignedInCheck(nil))
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(t.Context(), ln)
	c, err := winio.DialPipe(name, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	say := func(req localproto.Request) localproto.Response {
		b, _ := json.Marshal(req)
		c.Write(append(b, '\n'))
		line, err := r.ReadBytes('\n')
		if err != nil {
			t.Fatal(err)
		}
		var resp localproto.Response
		json.Unmarshal(line, &resp)
		return resp
	}
	n := say(localproto.Request{Op: localproto.OpNonce})
	if n.Error != nil {
		t.Fatal(n.Error)
	}
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p, _ := localproto.NewProof(&k.PublicKey, func(d []byte) ([]byte, error) { return ecdsa.SignASN1(rand.Reader, k, d) }, n.Nonce, "j", time.Now())
	if resp := say(localproto.Request{Op: localproto.OpToken, Proof: p}); resp.Error != nil || resp.Token == "" {
		t.Fatalf("token: %+v", resp.Error)
	}
	got := <-iss.got
	if got.Peer.PID != os.Getpid() || got.Peer.UID != sid || got.Peer.Executable != exe {
		t.Fatalf("peer %+v, want pid %d sid %s exe %s", got.Peer, os.Getpid(), sid, exe)
	}
}
