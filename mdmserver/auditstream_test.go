package mdmserver_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/halemdm/hale/mdmserver"
)

// The server streams every audit entry to a configured file sink, exactly as the export gives
// it, and a sink that cannot work is refused at start.
func TestAuditStreamedToFileSink(t *testing.T) {
	out := filepath.Join(t.TempDir(), "audit.jsonl")
	env := newTestEnv(t, func(c *mdmserver.Config) {
		c.AuditSinks = []mdmserver.AuditSink{{Type: "file", Path: out}}
	})
	for range 3 {
		env.Token("it")
	}
	var export []byte
	if code := env.Do("GET", "/api/v1/audit/export", env.Admin, nil, &export); code != http.StatusOK {
		t.Fatalf("export: %d", code)
	}
	want := strings.Split(strings.TrimSpace(string(export)), "\n")

	var got []string
	for deadline := time.Now().Add(10 * time.Second); len(got) < len(want); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d entries in the sink after 10s", len(got), len(want))
		}
		got = got[:0]
		f, err := os.Open(out)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			var rec struct {
				Index int64           `json:"index"`
				Entry json.RawMessage `json:"entry"`
			}
			if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
				t.Fatalf("sink line %q: %v", sc.Text(), err)
			}
			got = append(got, string(rec.Entry))
		}
		f.Close()
	}
	for i := range want {
		if !bytes.Equal([]byte(got[i]), []byte(want[i])) {
			t.Fatalf("sink entry %d:\n %s\nexport:\n %s", i, got[i], want[i])
		}
	}

	for _, bad := range [][]mdmserver.AuditSink{
		{{Type: "kafka"}},
		{{Type: "syslog", Address: "no-port"}},
		{{Type: "file"}},
		{{Type: "stdout"}, {Type: "stdout"}},
	} {
		cfg := env.Config
		cfg.DataDir = t.TempDir()
		cfg.AuditSinks = bad
		if err := cfg.Validate(); err == nil {
			t.Errorf("audit_sinks %+v validated", bad)
		}
	}
}
