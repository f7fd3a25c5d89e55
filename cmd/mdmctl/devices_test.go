package main

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"unicode"

	"github.com/russross/blackfriday/v2"

	"github.com/halemdm/hale/api"
	"github.com/halemdm/hale/policies"
)

// hostileText is what a device could put in a command result to make a report or a terminal
// lie: a remote image, a link, a table break, bidi overrides, newlines and terminal escapes.
const hostileText = "![x](http://evil.example/pixel.png) [click](http://evil.example) | a | b |\u202eevil\u2066 \n\r\x1b[31mred\x1b]0;owned\x07 <img src=x onerror=alert(1)> `tick` \u200b\u009b2J http://evil.example/bare"

// inertOnTerminal fails the test if out holds a control character other than newline, or a
// Unicode format character (bidi, zero width).
func inertOnTerminal(t *testing.T, what, out string) {
	t.Helper()
	for _, r := range out {
		if (unicode.IsControl(r) && r != '\n') || unicode.Is(unicode.Cf, r) {
			t.Fatalf("%s prints %U:\n%q", what, r, out)
		}
	}
}

// applyPolicy applies a policy to every device.
func (e *env) applyPolicy(t *testing.T, it cli, yaml string) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "p.yaml")
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	it.ok(t, "policy", "apply", "p", file)
	it.ok(t, "policy", "assign", "p", "--default")
}

// devices show prints what the JSON has: compliance, allow, the reasons, grace and until when,
// and each posture claim's source and age.
func TestDevicesShowVerdictAndPosture(t *testing.T) {
	e := newEnv(t)
	it := e.as(e.token("it"))
	e.applyPolicy(t, it, "passcode:\n  required: true\nencryption:\n  required: true\nreporting:\n  max_age: 15m\ngrace:\n  period: 1h\n")
	id := e.enrollAgent("dr.grey", "icu", &lockRunner{})
	var d struct {
		Verdict *struct {
			Compliant bool
			Reasons   []policies.Reason
		}
		Posture map[string]json.RawMessage
	}
	waitFor(t, "a verdict on a report", func() bool {
		e.call("GET", "/api/v1/devices/"+id, e.admin, nil, 200, &d)
		return d.Verdict != nil && d.Posture != nil && len(d.Verdict.Reasons) > 0
	})
	out := it.ok(t, "devices", "show", id).stdout
	inertOnTerminal(t, "devices show", out)
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^owner: +dr\.grey$`),
		regexp.MustCompile(`(?m)^access: +ALLOW$`), // noncompliant, but in grace
		regexp.MustCompile(`(?m)^compliant: +no$`),
		regexp.MustCompile(`(?m)^policy: +p v1$`),
		regexp.MustCompile(`(?m)^grace until: +\S+Z \(in grace, (59m|1h0m)\d+s left\)$`),
		regexp.MustCompile(`(?m)^noncompliant since: +\S+Z$`),
		regexp.MustCompile(`(?m)^CLAIM +VALUE +SOURCE +OBSERVED +AGE$`),
		regexp.MustCompile(`(?m)^disk_encrypted +true +agent +\S+Z +\d+(ms|s)$`),
		regexp.MustCompile(`(?m)^posture reported \S+Z \(\d+(ms|s) ago\):$`),
	} {
		if !want.MatchString(out) {
			t.Errorf("devices show lacks %s:\n%s", want, out)
		}
	}
	for _, r := range d.Verdict.Reasons {
		if !strings.Contains(out, "  "+r.Code+": ") {
			t.Errorf("devices show lacks the reason %s:\n%s", r.Code, out)
		}
	}
	// -o json stays the server's answer.
	var js struct{ Verdict, Posture json.RawMessage }
	it.okJSON(t, &js, "devices", "show", id)
	if len(js.Verdict) == 0 || len(js.Posture) == 0 {
		t.Fatalf("devices show -o json: %+v", js)
	}
}

// A selective wipe that refused a path is shown path by path as partial, in commands show and
// devices show, and the device is denied as wipe_incomplete; text a device wrote in a result
// comes out inert in every table.
func TestPartialWipeShownAndDeviceTextInert(t *testing.T) {
	e := newEnv(t)
	it, security := e.as(e.token("it")), e.as(e.token("security"))
	// Outside the agent's wipe roots: the agent refuses it and removes nothing there.
	refused := "/var/lib/hale-mdmctl-test/securetext"
	e.applyPolicy(t, it, "reporting:\n  max_age: 15m\nmanaged_data:\n  linux:\n    - "+refused+"\n")
	id := e.enrollAgent("nurse.joy", "ward7", &lockRunner{err: errors.New(hostileText)})
	e.waitDecided(t, id)

	var lock api.SecurityAnswer
	security.okJSON(t, &lock, "lock", id, "--reason", "left in a taxi")
	waitFor(t, "the lock result", func() bool {
		var c command
		it.okJSON(t, &c, "commands", "show", id, lock.CommandID)
		return c.State == "error"
	})
	for _, args := range [][]string{{"commands", "list", id}, {"commands", "show", id, lock.CommandID}} {
		out := it.ok(t, args...).stdout
		inertOnTerminal(t, strings.Join(args[:2], " "), out)
		if !strings.Contains(out, "![x](http://evil.example/pixel.png)") {
			t.Errorf("%s hides the device's text instead of showing it inert:\n%s", args[:2], out)
		}
	}
	if n := strings.Count(it.ok(t, "commands", "list", id).stdout, "\n"); n != 2 {
		t.Errorf("commands list has %d lines for one command: a newline in a detail broke the table", n)
	}
	js := it.ok(t, "commands", "show", id, lock.CommandID, "-o", "json").stdout
	inertOnTerminal(t, "commands show -o json", strings.ReplaceAll(js, "\n", ""))
	var c command
	if err := json.Unmarshal([]byte(js), &c); err != nil || !strings.Contains(c.Result.Detail, "\u202eevil") {
		t.Fatalf("-o json changed the value: %v %+v", err, c.Result)
	}

	var wipe api.SecurityAnswer
	security.okJSON(t, &wipe, "wipe", id, "--mode", "selective", "--reason", "stolen", "--yes")
	waitFor(t, "the wipe result", func() bool {
		var c command
		it.okJSON(t, &c, "commands", "show", id, wipe.CommandID)
		return c.Result != nil
	})
	out := it.ok(t, "commands", "show", id, wipe.CommandID).stdout
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^state: +partial$`),
		regexp.MustCompile(`(?m)^result: +partial$`),
		regexp.MustCompile(`(?m)^PATH +OUTCOME +REASON +POLICY ENTRY$`),
		regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(refused) + ` +refused +it is not strictly inside an allowed root`),
	} {
		if !want.MatchString(out) {
			t.Errorf("commands show lacks %s:\n%s", want, out)
		}
	}
	out = it.ok(t, "devices", "show", id).stdout
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^access: +DENY$`),
		regexp.MustCompile(`(?m)^access state: +wipe_incomplete$`),
		regexp.MustCompile(`(?m)^  wipe_incomplete: the last wipe left managed data`),
		regexp.MustCompile(`(?m)^last wipe: +` + wipe.CommandID + ` partial$`),
		regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(refused) + ` +refused `),
	} {
		if !want.MatchString(out) {
			t.Errorf("devices show lacks %s:\n%s", want, out)
		}
	}
	if strings.Contains(out, "wiped") {
		t.Errorf("devices show calls a partly wiped device wiped:\n%s", out)
	}
}

// The drill report shows a device's result text as text: no image, link, HTML or table break
// renders, and no control or bidi character reaches the file or the terminal.
func TestDrillReportEscapesDeviceText(t *testing.T) {
	e := newEnv(t)
	id := e.enrollAgent("drill.hostile", "test-devices", &lockRunner{err: errors.New(hostileText)})
	e.waitDecided(t, id)
	dir := t.TempDir()
	r := e.as(e.token("security")).fails(t, exitVerify, "drill", id, "--report-dir", dir, "--timeout", "20s")
	inertOnTerminal(t, "the drill's output", r.stdout+r.stderr)
	rep, md := readDrill(t, dir, id)
	if rep.CommandResult == nil || !strings.Contains(rep.CommandResult.Detail, "\u202eevil") {
		t.Fatalf("the JSON report lost the device's text: %+v", rep.CommandResult)
	}
	inertOnTerminal(t, "the Markdown report", md)
	jsons, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	raw, _ := os.ReadFile(jsons[0])
	inertOnTerminal(t, "the JSON report", string(raw))
	if !strings.Contains(md, "![x](http://evil.example/pixel.png)") {
		t.Fatalf("the report does not show the device's text:\n%s", md)
	}

	html := string(blackfriday.Run([]byte(md)))
	for _, bad := range []string{"<img", "<a ", "<script"} {
		if strings.Contains(html, bad) {
			t.Errorf("the rendered report has %q:\n%s", bad, html)
		}
	}
	// Every row of the steps table still has its seven cells.
	steps := html[strings.Index(html, "<table>"):]
	steps = steps[:strings.Index(steps, "</table>")]
	for _, row := range strings.Split(steps, "<tr>")[2:] {
		if n := strings.Count(row, "<td"); n != 7 {
			t.Errorf("a steps row renders %d cells, want 7:\n%s", n, row)
		}
	}
}
