package agent

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/halemdm/hale/agent/state"
	"github.com/halemdm/hale/internal/rootpin"
)

func FuzzDecodeCommands(f *testing.F) {
	for _, s := range []string{
		`{"commands":[]}`,
		`{"commands":[{"id":"c_1","type":"lock","issued_at":"2026-01-01T00:00:00Z"}]}`,
		`{"commands":[{"id":"c_2","type":"wipe","mode":"selective","managed_data":["/home/a/.app"]}]}`,
		`{"commands":[{"id":"../../etc/passwd","type":"lock"}]}`,
		`{"commands":[{"id":"c","type":"wipe","managed_data":["relative"]}]}`,
		`{"commands":null}`, `null`, `[]`, `{"commands":[{"issued_at":"nope"}]}`, "\x00",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var r commandsResponse
		if err := decodeResponse(bytes.NewReader(b), maxResponse, &r); err != nil {
			return
		}
		if len(r.Commands) > maxCommands {
			t.Fatal("too many commands accepted")
		}
		for _, c := range r.Commands {
			// The ID names a journal file: it must stay a single safe path element.
			if !state.ValidID(c.ID) || strings.ContainsAny(c.ID, `/\.`) || filepath.Base(c.ID) != c.ID {
				t.Fatalf("unsafe command ID %q accepted", c.ID)
			}
			// Whatever paths were sent, a wipe plan only ever removes absolute paths strictly
			// inside an allowed root or a user's home; anything else is refused.
			root := t.TempDir()
			home := filepath.Join(t.TempDir(), "u")
			targets, err := planWipe(c.ManagedData, []string{home}, []string{root}, "")
			if err == nil {
				for _, tg := range targets {
					if tg.refused != "" {
						continue
					}
					if !filepath.IsAbs(tg.path) || !(within(tg.path, root) && tg.root == root || within(tg.path, home) && tg.root == home) ||
						filepath.Join(tg.root, tg.rel) != tg.path {
						t.Fatalf("wipe plan escapes its root: %+v", tg)
					}
				}
			}
		}
	})
}

func FuzzDecodeReportResponse(f *testing.F) {
	for _, s := range []string{
		`{"accepted":true,"next_report_in":"60s","nonce":"abc","policy_etag":"\"e\""}`,
		`{"accepted":false}`, `{"accepted":true,"next_report_in":"soon"}`, `{"accepted":true,"nonce":""}`,
		`{"accepted":true,"next_report_in":"-9223372036854775808ns"}`, `garbage`,
	} {
		f.Add([]byte(s))
	}
	a := &Agent{minInterval: 15e9, maxInterval: 3600e9}
	f.Fuzz(func(t *testing.T, b []byte) {
		var r reportResponse
		if err := decodeResponse(bytes.NewReader(b), maxResponse, &r); err != nil {
			return
		}
		if !r.Accepted || len(r.Nonce) > 512 {
			t.Fatalf("invalid answer accepted: %+v", r)
		}
		if d := a.clampInterval(r.NextReportIn, 60e9); d < a.minInterval || d > a.maxInterval {
			t.Fatalf("interval %s escapes its bounds", d)
		}
	})
}

func FuzzDecodeEnrollResponse(f *testing.F) {
	f.Add([]byte(`{"device_id":"d_0123456789abcdef","certificate_chain":"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n","report_interval":"60s"}`))
	f.Add([]byte(`{"device_id":"../x","certificate_chain":"x"}`))
	f.Add([]byte(`{"device_id":"d","certificate_chain":"","report_interval":"1y"}`))
	key := mustKey(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		var r enrollResponse
		if err := decodeResponse(bytes.NewReader(b), maxResponse, &r); err != nil {
			return
		}
		if !state.ValidID(r.DeviceID) {
			t.Fatalf("invalid device ID %q accepted", r.DeviceID)
		}
		// The chain must never be accepted for a key it does not certify.
		if certs, err := checkChain([]byte(r.CertificateChain), key, time.Now()); err == nil {
			t.Fatalf("a fuzzed chain certified our key: %v", certs[0].Subject)
		}
	})
}

func FuzzParseRootPEM(f *testing.F) {
	ca := newTestCA(f)
	f.Add([]byte(pemOf(ca.root)))
	f.Add([]byte(pemOf(ca.inter, ca.root)))
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := rootpin.ParseRoot(b)
		if err == nil && !c.IsCA {
			t.Fatal("a non-CA certificate accepted as the root")
		}
	})
}

func FuzzDecodePolicy(f *testing.F) {
	f.Add([]byte(`{"policy":"p","version":1,"platform":"linux","report_interval":"1m","report_max_age":"1h","managed_data":["/home/a"],"screen_lock":{"required":true,"max_idle":"5m"}}`))
	f.Add([]byte(`{"etag":"\"x\"","policy":{"report_interval":"-1m"}}`))
	f.Add([]byte(`{"managed_data":["rel"]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var p agentPolicy
		if err := decodeResponse(bytes.NewReader(b), maxResponse, &p); err == nil {
			for _, d := range p.ManagedData {
				if !filepath.IsAbs(d) {
					t.Fatalf("relative managed data %q accepted", d)
				}
			}
		}
		if sp, err := decodeStoredPolicy(b); err == nil && (sp.Policy.ReportInterval < 0 || len(sp.ETag) > 256) {
			t.Fatalf("invalid stored policy accepted: %+v", sp)
		}
	})
}
