package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/halemdm/hale/api"
	"github.com/halemdm/hale/internal/applesim"
	"github.com/halemdm/hale/mdmserver"
)

// login checks the token, pins the CA only when it matches the fingerprint or the CA file, and
// saves a private profile; later commands take flags over environment over the profile, and a
// profile's token never goes to another server.
func TestLoginAndProfilePrecedence(t *testing.T) {
	e := newEnv(t)
	cfgPath := filepath.Join(e.dir, "xdg", "hale", "mdmctl.json")
	bare := cli{env: map[string]string{"XDG_CONFIG_HOME": filepath.Join(e.dir, "xdg")}}

	// A wrong fingerprint pins nothing and saves nothing.
	wrong := strings.Repeat("ab", 32)
	r := bare.fails(t, exitVerify, "login", "--server", e.url, "--token", e.admin, "--ca-fingerprint", wrong)
	if !strings.Contains(r.stderr, "not pinned") {
		t.Errorf("wrong fingerprint: %s", r.stderr)
	}
	if _, err := os.Stat(cfgPath); !os.IsNotExist(err) {
		t.Fatalf("a profile was saved after a fingerprint mismatch: %v", err)
	}
	bare.fails(t, exitUsage, "login", "--server", e.url, "--token", e.admin, "--ca-fingerprint", "xyz")
	// A token the server does not know.
	bare.fails(t, exitAuth, "login", "--server", e.url, "--token", "hale_bogus", "--ca-file", e.rootPEM)

	// The right fingerprint, with colons and upper case.
	fp := strings.ToUpper(e.fingerprint())
	var colons []string
	for i := 0; i < len(fp); i += 2 {
		colons = append(colons, fp[i:i+2])
	}
	r = bare.ok(t, "login", "--server", e.url+"/", "--token", e.admin, "--ca-fingerprint", strings.Join(colons, ":"))
	if strings.Contains(r.stdout+r.stderr, e.admin) {
		t.Fatal("login printed the token")
	}
	fi, err := os.Stat(cfgPath)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("profile file: %v %v", fi.Mode(), err)
	}
	if di, _ := os.Stat(filepath.Dir(cfgPath)); di.Mode().Perm() != 0o700 {
		t.Fatalf("profile directory mode %v", di.Mode())
	}
	var cf configFile
	b, _ := os.ReadFile(cfgPath)
	if err := json.Unmarshal(b, &cf); err != nil || cf.Current != "default" || cf.Profiles["default"] == nil ||
		cf.Profiles["default"].Server != e.url || !strings.Contains(cf.Profiles["default"].RootPEM, "BEGIN CERTIFICATE") {
		t.Fatalf("saved profile: %v %s", err, b)
	}

	// The profile alone is enough: server, token and pinned CA.
	bare.ok(t, "devices", "list")
	// Environment over profile: a bad HALE_TOKEN wins over the profile's good token...
	bare.with("HALE_TOKEN", "hale_bogus").fails(t, exitAuth, "devices", "list")
	// ...and a flag over the environment.
	bare.with("HALE_TOKEN", "hale_bogus").ok(t, "devices", "list", "--token", e.admin)
	// A server from the environment that is not the profile's gets neither its token nor its CA.
	other := strings.Replace(e.url, "127.0.0.1", "localhost", 1)
	r = bare.with("HALE_SERVER", other).fails(t, exitAuth, "devices", "list")
	if !strings.Contains(r.stderr, "no token") {
		t.Errorf("profile token used for another server? %s", r.stderr)
	}
	// The flag beats an unreachable server in the environment.
	bare.with("HALE_SERVER", "https://127.0.0.1:1").ok(t, "devices", "list", "--server", e.url)
	r = bare.with("HALE_SERVER", "https://127.0.0.1:1").fails(t, exitError, "devices", "list", "--token", e.admin)
	if strings.Contains(r.stderr, e.admin) {
		t.Fatal("an error printed the token")
	}

	// A second profile through --ca-file; a named profile that does not exist is a usage error.
	it := e.token("it")
	bare.ok(t, "login", "--server", e.url, "--token", it, "--ca-file", e.rootPEM, "--profile", "it")
	bare.ok(t, "enroll", "list") // the current profile is now "it"
	bare.fails(t, exitAuth, "tokens", "list")
	bare.ok(t, "tokens", "list", "--profile", "default")
	bare.fails(t, exitUsage, "tokens", "list", "--profile", "nope")

	// No server anywhere.
	cli{env: map[string]string{"HALE_CONFIG": filepath.Join(e.dir, "empty.json")}}.fails(t, exitUsage, "devices", "list")
	// A token over plain http to a remote host is refused before anything is sent.
	bare.fails(t, exitUsage, "devices", "list", "--server", "http://mdm.example.org")
	bare.fails(t, exitUsage, "devices", "list", "-o", "yaml")
	bare.fails(t, exitUsage, "devices", "lisst")
}

func TestTokens(t *testing.T) {
	e := newEnv(t)
	admin := e.as(e.admin)

	r := admin.ok(t, "tokens", "create", "--name", "ci-it", "--role", "it", "--ttl", "24h")
	var secret string
	for _, line := range strings.Split(r.stdout, "\n") {
		if v, ok := strings.CutPrefix(line, "token:"); ok {
			secret = strings.TrimSpace(v)
		}
	}
	if secret == "" || !strings.Contains(r.stderr, "shown only now") {
		t.Fatalf("create did not show the token once: %q %q", r.stdout, r.stderr)
	}
	e.as(secret).ok(t, "devices", "list") // the new token works

	var list struct {
		Tokens []struct{ ID, Name, Role, State, Token string }
	}
	admin.okJSON(t, &list, "tokens", "list")
	id := ""
	for _, tk := range list.Tokens {
		if tk.Token != "" {
			t.Fatal("token list carries a secret")
		}
		if tk.Name == "ci-it" {
			id = tk.ID
		}
	}
	if id == "" {
		t.Fatalf("created token not listed: %+v", list)
	}
	r = admin.ok(t, "tokens", "list")
	if !strings.Contains(r.stdout, "ci-it") || strings.Contains(r.stdout, secret) {
		t.Fatalf("table: %s", r.stdout)
	}

	r = admin.ok(t, "tokens", "revoke", id)
	if !strings.Contains(r.stdout, "revoked") {
		t.Errorf("revoke: %s", r.stdout)
	}
	e.as(secret).fails(t, exitAuth, "devices", "list")
	r = admin.fails(t, exitNotFound, "tokens", "revoke", "t_nosuch")
	if !strings.HasPrefix(r.stderr, "error: Not Found: ") || !strings.Contains(r.stderr, "(request ") {
		t.Errorf("problem output: %q", r.stderr)
	}
	// Only admin manages tokens; the bad role is the server's to refuse.
	e.as(e.token("security")).fails(t, exitAuth, "tokens", "list")
	admin.fails(t, exitUsage, "tokens", "create", "--name", "x", "--role", "overlord")
	admin.fails(t, exitUsage, "tokens", "create", "--role", "it") // --name is required
}

func TestEnrollPolicyAndDevices(t *testing.T) {
	e := newEnv(t)
	it := e.as(e.token("it"))

	var en struct{ ID, Token, Platform string }
	it.okJSON(t, &en, "enroll", "create", "--owner", "nurse.joy", "--group", "ward7", "--platform", "agent", "--ttl", "1h")
	if en.ID == "" || en.Token == "" || en.Platform != "agent" {
		t.Fatalf("enroll create: %+v", en)
	}
	r := it.ok(t, "enroll", "create", "--owner", "dr.who", "--group", "er", "--platform", "agent")
	if !strings.Contains(r.stdout, "token:") {
		t.Errorf("enroll create table: %s", r.stdout)
	}
	it.fails(t, exitUsage, "enroll", "create", "--owner", "a", "--group", "b", "--platform", "windows")
	r = it.ok(t, "enroll", "list")
	if !strings.Contains(r.stdout, "nurse.joy") || !strings.Contains(r.stdout, "dr.who") || !strings.Contains(r.stdout, "pending") {
		t.Fatalf("enroll list: %s", r.stdout)
	}
	it.ok(t, "enroll", "revoke", en.ID)
	it.fails(t, exitNotFound, "enroll", "revoke", "e_nosuch")

	// Policies: apply the HIPAA baseline as YAML bytes, read it back, list, dry-run, assign.
	policyFile := filepath.Join("..", "..", "policies", "testdata", "hipaa-texting.yaml")
	src, err := os.ReadFile(policyFile)
	if err != nil {
		t.Fatal(err)
	}
	r = it.ok(t, "policy", "apply", "hipaa", policyFile)
	if !strings.Contains(r.stdout, "version 1") {
		t.Fatalf("apply: %s", r.stdout)
	}
	r = it.ok(t, "policy", "get", "hipaa")
	if r.stdout != string(src) && r.stdout != string(src)+"\n" {
		t.Fatalf("policy get did not round-trip the source:\n%s", r.stdout)
	}
	r = it.ok(t, "policy", "list")
	if !strings.Contains(r.stdout, "hipaa") {
		t.Fatalf("policy list: %s", r.stdout)
	}
	it.fails(t, exitNotFound, "policy", "get", "nosuch")
	bad := filepath.Join(e.dir, "bad.yaml")
	os.WriteFile(bad, []byte("passcode:\n  min_length: -3\n"), 0o600)
	r = it.fails(t, exitUsage, "policy", "apply", "bad", bad)
	if !strings.Contains(r.stderr, "passcode.min_length") && !strings.Contains(r.stderr, "min_length") {
		t.Errorf("field errors not shown: %s", r.stderr)
	}

	// A device that reports an unencrypted-enough posture to fail HIPAA: an agent.
	id := e.enrollAgent("nurse.joy", "ward7", &lockRunner{})
	var devs struct {
		Devices []struct{ ID, Owner, Group string }
	}
	it.okJSON(t, &devs, "devices", "list", "--group", "ward7")
	if len(devs.Devices) != 1 || devs.Devices[0].ID != id {
		t.Fatalf("devices list --group: %+v", devs)
	}
	it.okJSON(t, &devs, "devices", "list", "--owner", "nobody")
	if len(devs.Devices) != 0 {
		t.Fatalf("devices list --owner nobody: %+v", devs)
	}
	r = it.ok(t, "devices", "show", id)
	if !strings.Contains(r.stdout, "nurse.joy") || !strings.Contains(r.stdout, "agent") {
		t.Fatalf("devices show: %s", r.stdout)
	}
	it.fails(t, exitNotFound, "devices", "show", "d_nosuch")
	it.fails(t, exitUsage, "devices", "list", "--state", "melted")

	// Many devices follow next_cursor: enroll two more, list one per page.
	e.enrollAgent("a", "ward8", &lockRunner{})
	e.enrollAgent("b", "ward8", &lockRunner{})
	it.okJSON(t, &devs, "devices", "list", "--page-size", "1")
	if len(devs.Devices) != 3 {
		t.Fatalf("paged devices list: %d devices", len(devs.Devices))
	}

	var dry struct {
		Policy       string
		Noncompliant []struct {
			DeviceID string `json:"device_id"`
			Reasons  []struct{ Code string }
		}
	}
	it.okJSON(t, &dry, "policy", "dry-run", "hipaa", "--group", "ward7")
	if len(dry.Noncompliant) != 1 || dry.Noncompliant[0].DeviceID != id || len(dry.Noncompliant[0].Reasons) == 0 {
		t.Fatalf("dry-run: %+v", dry)
	}
	r = it.ok(t, "policy", "dry-run", "hipaa", policyFile, "--default")
	if !strings.Contains(r.stdout, id) {
		t.Fatalf("dry-run with a file: %s", r.stdout)
	}
	it.fails(t, exitUsage, "policy", "dry-run", "hipaa", "--default", "--group", "x")

	r = it.ok(t, "policy", "assign", "hipaa", "--group", "ward7")
	if !strings.Contains(r.stdout, "ward7") {
		t.Fatalf("assign: %s", r.stdout)
	}
	it.fails(t, exitUsage, "policy", "assign", "hipaa")
	it.fails(t, exitNotFound, "policy", "assign", "nosuch", "--default")
	r = it.ok(t, "policy", "list")
	if !strings.Contains(r.stdout, "group:ward7") {
		t.Fatalf("policy list shows no assignment: %s", r.stdout)
	}

	// The access decision, by ID (IT may ask) and by certificate fingerprint (access role).
	r = it.ok(t, "access", "check", id)
	if !strings.Contains(r.stdout, "decision:") {
		t.Fatalf("access check: %s", r.stdout)
	}
	var dev struct {
		CertSHA256 []string `json:"cert_sha256"`
	}
	e.call("GET", "/api/v1/devices/"+id, e.admin, nil, 200, &dev)
	var ans struct {
		DeviceID string `json:"device_id"`
		Allow    bool
	}
	e.as(e.token("access")).okJSON(t, &ans, "access", "check", "--fingerprint", dev.CertSHA256[0])
	if ans.DeviceID != id {
		t.Fatalf("access check by fingerprint: %+v", ans)
	}
	it.fails(t, exitAuth, "access", "check", "--fingerprint", dev.CertSHA256[0])
	it.fails(t, exitUsage, "access", "check", id, "--fingerprint", "ab")
}

// Lock and wipe: the confirmation, roles, unknown devices, idempotency and the commands list.
func TestSecurityActions(t *testing.T) {
	e := newEnv(t)
	security := e.as(e.token("security"))
	it := e.as(e.token("it"))
	id := e.enrollAgent("nurse.joy", "ward7", &lockRunner{})

	// No terminal and no --yes: refused before anything is sent.
	r := security.fails(t, exitUsage, "wipe", id, "--reason", "stolen", "--mode", "selective")
	if !strings.Contains(r.stderr, "--yes") {
		t.Errorf("refusal does not say how: %s", r.stderr)
	}
	security.fails(t, exitUsage, "wipe", id, "--mode", "selective", "--yes") // --reason is required
	security.fails(t, exitUsage, "wipe", id, "--reason", "x", "--yes")       // --mode is required
	// On a terminal, a wrong device ID refuses.
	tty := security
	tty.tty, tty.stdin = true, "not-the-id\n"
	r = tty.fails(t, exitUsage, "wipe", id, "--reason", "stolen", "--mode", "selective")
	if !strings.Contains(r.stderr, "Type the device ID") {
		t.Errorf("no prompt: %s", r.stderr)
	}
	var dev struct{ State string }
	e.call("GET", "/api/v1/devices/"+id, e.admin, nil, 200, &dev)
	if dev.State != "active" {
		t.Fatalf("device %s after refused wipes", dev.State)
	}
	// IT may not wipe; an unknown device is not found.
	it.fails(t, exitAuth, "wipe", id, "--reason", "stolen", "--mode", "selective", "--yes")
	security.fails(t, exitNotFound, "wipe", "d_nosuch", "--reason", "stolen", "--mode", "selective", "--yes")
	security.fails(t, exitNotFound, "lock", "d_nosuch", "--reason", "lost")

	// Lock with an idempotency key; the same key again answers the same command.
	var lock1, lock2 api.SecurityAnswer
	security.okJSON(t, &lock1, "lock", id, "--reason", "left in a taxi", "--idempotency-key", "k-1")
	security.okJSON(t, &lock2, "lock", id, "--reason", "left in a taxi", "--idempotency-key", "k-1")
	if lock1.CommandID == "" || lock1.CommandID != lock2.CommandID {
		t.Fatalf("idempotent lock: %+v %+v", lock1, lock2)
	}
	r = security.ok(t, "lock", id, "--reason", "again")
	if !strings.Contains(r.stderr, "idempotency key: ") || !strings.Contains(r.stdout, "command:") {
		t.Errorf("lock output: %s / %s", r.stdout, r.stderr)
	}
	waitFor(t, "the lock to be acknowledged", func() bool {
		r := it.ok(t, "commands", "show", id, lock1.CommandID, "-o", "json")
		return strings.Contains(r.stdout, `"acknowledged"`)
	})
	r = it.ok(t, "commands", "list", id)
	if !strings.Contains(r.stdout, lock1.CommandID) || !strings.Contains(r.stdout, "lock") {
		t.Fatalf("commands list: %s", r.stdout)
	}
	it.fails(t, exitNotFound, "commands", "show", id, "c_nosuch")

	// Lost mode is for security only.
	it.fails(t, exitAuth, "lost-mode", id, "--reason", "lost on the ward")
	r = security.ok(t, "lost-mode", id, "--reason", "lost on the ward", "--message", "Call the ward desk", "--phone", "+1 555 0100")
	if !strings.Contains(r.stdout, "action:        lost-mode") || !strings.Contains(r.stdout, "device state:  lost") {
		t.Fatalf("lost-mode: %s", r.stdout)
	}

	// A confirmed wipe on a terminal goes through.
	tty.stdin = id + "\n"
	r = tty.ok(t, "wipe", id, "--reason", "stolen", "--mode", "selective")
	if !strings.Contains(r.stdout, "wipe_pending") {
		t.Fatalf("wipe: %s", r.stdout)
	}
}

// A full wipe under the two-person rule waits for a second security token holder; approve and
// approvals list drive it; the PIN of the macOS erase is shown to security.
func TestTwoPersonWipe(t *testing.T) {
	e := newEnv(t, func(c *mdmserver.Config) { c.TwoPersonWipeGroups = []string{"*"} })
	admin := e.as(e.admin)
	both, _, _ := e.pushCertFiles()
	r := admin.ok(t, "pushcert", "upload", both)
	if !strings.Contains(r.stdout, testTopic) {
		t.Fatalf("pushcert upload: %s", r.stdout)
	}
	dev := e.appleDevice(applesim.WithState(applesim.MacOSState()))
	first, second := e.as(e.token("security")), e.as(e.token("security"))

	r = first.ok(t, "wipe", dev.UDID(), "--reason", "stolen from the ward", "--mode", "full", "--yes")
	if !strings.Contains(r.stdout, "awaits approval by a second security token holder") || !strings.Contains(r.stdout, "mdmctl approve ") {
		t.Fatalf("held wipe: %s", r.stdout)
	}
	var list struct {
		Approvals []struct{ ID, State string }
	}
	first.okJSON(t, &list, "approvals", "list", "--state", "pending")
	if len(list.Approvals) != 1 {
		t.Fatalf("approvals: %+v", list)
	}
	apID := list.Approvals[0].ID
	first.fails(t, exitAuth, "approve", apID) // not the requester
	r = second.ok(t, "approve", apID, "--comment", "confirmed with the ward")
	if !strings.Contains(r.stdout, "approved") {
		t.Fatalf("approve: %s", r.stdout)
	}
	second.fails(t, exitConflict, "approve", apID, "--reject")
	var all struct {
		Approvals []struct {
			ID        string
			CommandID string `json:"command_id"`
		}
	}
	second.okJSON(t, &all, "approvals", "list", "--state", "approved")
	if len(all.Approvals) != 1 || all.Approvals[0].CommandID == "" {
		t.Fatalf("approved list: %+v", all)
	}
	cmdID := all.Approvals[0].CommandID
	r = second.ok(t, "commands", "pin", dev.UDID(), cmdID)
	waitFor(t, "the erase to reach the device", func() bool { return dev.State().Erased })
	if pin := strings.TrimSpace(r.stdout); len(pin) != 6 || pin != dev.State().ErasePIN {
		t.Fatalf("pin %q, device got %q", pin, dev.State().ErasePIN)
	}
	e.as(e.token("it")).fails(t, exitAuth, "commands", "pin", dev.UDID(), cmdID)
}
