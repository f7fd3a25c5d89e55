package auditstream_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/halemdm/hale/internal/rsyslogtest"
	"github.com/halemdm/hale/mdmserver/audit"
	"github.com/halemdm/hale/mdmserver/audit/audittest"
	"github.com/halemdm/hale/mdmserver/auditstream"
	"github.com/halemdm/hale/mdmserver/storage"
	"github.com/halemdm/hale/mdmserver/storage/boltstore"
)

// openLog opens the audit log in a bbolt store in dir.
func openLog(t testing.TB, dir string) (*audit.Log, *boltstore.Store) {
	t.Helper()
	st, err := boltstore.Open(filepath.Join(dir, "hale.db"))
	if err != nil {
		t.Fatal(err)
	}
	l, _ := audittest.NewLog(t, storage.Scope(storage.Store(st), func(tx storage.Tx) audit.Tx { return tx }))
	return l, st
}

// start runs a streamer until the returned stop is called (or the test ends).
func start(t testing.TB, l *audit.Log, opts []auditstream.Option, sinks ...auditstream.Sink) (stop func()) {
	t.Helper()
	s, err := auditstream.New(l, sinks, append([]auditstream.Option{auditstream.WithPollInterval(10 * time.Millisecond),
		auditstream.WithMaxRetryWait(100 * time.Millisecond)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return stop
}

// line is a JSON Lines record as the file sink writes it.
type line struct {
	Index    int64           `json:"index"`
	LeafHash string          `json:"leaf_hash"`
	Entry    json.RawMessage `json:"entry"`
}

// readLines reads the file sink's records.
func readLines(t *testing.T, path string) []line {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []line
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var l line
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("line %d is not JSON: %v: %s", len(out), err, sc.Bytes())
		}
		out = append(out, l)
	}
	return out
}

// checkRecord fails t unless the entry's bytes are the log's entry index and hash to leaf.
func checkRecord(t *testing.T, l *audit.Log, index int64, leaf string, data []byte) {
	t.Helper()
	recs, err := l.Records(context.Background(), index, 1)
	if err != nil || len(recs) != 1 {
		t.Fatalf("Records(%d): %v %v", index, recs, err)
	}
	if string(recs[0].Data) != string(data) {
		t.Fatalf("entry %d delivered as %s, stored as %s", index, data, recs[0].Data)
	}
	if got := tlog.RecordHash(data).String(); got != leaf || leaf != recs[0].LeafHash.String() {
		t.Fatalf("entry %d: leaf hash %s delivered, %s computed from the delivered bytes, %s stored", index, leaf, got, recs[0].LeafHash)
	}
}

// waitFor polls cond for up to 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// Every entry reaches the file in order with its index and leaf hash; a restart resumes from
// the durable cursor, delivering nothing twice that was acknowledged.
func TestFileSinkInOrderAndResumes(t *testing.T) {
	dir := t.TempDir()
	l, st := openLog(t, dir)
	out := filepath.Join(dir, "audit.jsonl")
	audittest.AppendN(t, l, 0, 25)
	sink, err := auditstream.OpenFile("siem-file", out)
	if err != nil {
		t.Fatal(err)
	}
	stop := start(t, l, nil, sink)
	waitFor(t, "25 lines", func() bool { return len(readLines(t, out)) == 25 })
	stop()
	audittest.AppendN(t, l, 25, 5) // while nothing delivers

	sink, err = auditstream.OpenFile("siem-file", out)
	if err != nil {
		t.Fatal(err)
	}
	start(t, l, nil, sink)
	waitFor(t, "30 lines", func() bool { return len(readLines(t, out)) >= 30 })
	lines := readLines(t, out)
	if len(lines) != 30 {
		t.Fatalf("%d lines after the restart, want 30: the cursor did not hold", len(lines))
	}
	for i, ln := range lines {
		if ln.Index != int64(i) {
			t.Fatalf("line %d holds entry %d: out of order", i, ln.Index)
		}
		checkRecord(t, l, ln.Index, ln.LeafHash, ln.Entry)
	}
	// The cursor moves once the batch is in the file.
	waitFor(t, "the cursor at 30", func() bool { n, err := l.Delivered(context.Background(), "siem-file"); return err == nil && n == 30 })
	_ = st
}

// flaky is a sink that fails while down is set, then records what it gets.
type flaky struct {
	mu   sync.Mutex
	down bool
	got  []int64
}

func (f *flaky) Name() string { return "flaky" }
func (f *flaky) Close() error { return nil }
func (f *flaky) Deliver(_ context.Context, recs []audit.Record) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return errors.New("receiver down")
	}
	for _, r := range recs {
		f.got = append(f.got, r.Index)
	}
	return nil
}

// A sink that is down does not block appends; its lag shows in the metric and is delivered,
// in order and without a gap, once it is back.
func TestSinkDownQueuesAndCatchesUp(t *testing.T) {
	l, _ := openLog(t, t.TempDir())
	reg := prometheus.NewRegistry()
	f := &flaky{down: true}
	start(t, l, []auditstream.Option{auditstream.WithMetrics(reg), auditstream.WithAlertLag(10)}, f)
	audittest.AppendN(t, l, 0, 40) // each commits at once: nothing waits for the sink
	lag := func() float64 {
		mfs, _ := reg.Gather()
		for _, mf := range mfs {
			if mf.GetName() == "hale_audit_sink_lag_entries" {
				return mf.GetMetric()[0].GetGauge().GetValue()
			}
		}
		return -1
	}
	waitFor(t, "the lag metric to show 40", func() bool { return lag() == 40 })
	f.mu.Lock()
	f.down = false
	f.mu.Unlock()
	waitFor(t, "the sink to catch up", func() bool { f.mu.Lock(); defer f.mu.Unlock(); return len(f.got) == 40 })
	for i, idx := range f.got {
		if idx != int64(i) {
			t.Fatalf("delivered %v: out of order or with a gap", f.got)
		}
	}
	waitFor(t, "the lag metric to show 0", func() bool { return lag() == 0 })
	if n := testutil.CollectAndCount(reg, "hale_audit_sink_failures_total"); n != 1 {
		t.Fatalf("failures metric series = %d", n)
	}
}

// syslogLine matches what rsyslog writes of a message: the RFC 5424 header, Hale's structured
// data, then the entry.
var syslogLine = regexp.MustCompile(`^<(\d+)>1 (\S+) (\S+) hale (\d+) (\S+) \[hale@32473 index="(\d+)" leaf="([^"]+)"\] (\{.*\})$`)

// Every entry reaches a real rsyslog over TLS as an RFC 5424 message; while rsyslog is down the
// entries queue; once it is back they all arrive, in order of first arrival, none missing.
func TestSyslogToRsyslog(t *testing.T) {
	rs := rsyslogtest.Start(t)
	l, _ := openLog(t, t.TempDir())
	sink := auditstream.NewSyslogSink("siem", rs.Addr, &tls.Config{RootCAs: rs.CA, ServerName: "127.0.0.1"},
		auditstream.WithHostname("hale-test"), auditstream.WithTimeout(2*time.Second))
	start(t, l, nil, sink)
	audittest.AppendN(t, l, 0, 20)
	received := func() map[int64]bool {
		seen := map[int64]bool{}
		for _, s := range rs.Lines() {
			m := syslogLine.FindStringSubmatch(s)
			if m == nil {
				continue
			}
			idx, _ := strconv.ParseInt(m[6], 10, 64)
			seen[idx] = true
		}
		return seen
	}
	waitFor(t, "20 entries at rsyslog", func() bool { return len(received()) == 20 })
	for _, s := range rs.Lines() {
		m := syslogLine.FindStringSubmatch(s)
		if m == nil {
			t.Fatalf("rsyslog received a line that is not Hale's RFC 5424 message: %q", s)
		}
		if m[1] != "110" || m[3] != "hale-test" {
			t.Fatalf("PRI %s host %s, want 110 (log audit, info) and hale-test", m[1], m[3])
		}
		idx, _ := strconv.ParseInt(m[6], 10, 64)
		checkRecord(t, l, idx, m[7], []byte(m[8]))
		if want := audittest.Entry(int(idx)).Action; m[5] != want {
			t.Fatalf("MSGID %s, want the action %s", m[5], want)
		}
	}

	rs.Stop()
	audittest.AppendN(t, l, 20, 10)
	time.Sleep(300 * time.Millisecond) // the sink finds the receiver gone
	rs.Start()
	audittest.AppendN(t, l, 30, 5)
	waitFor(t, "all 35 entries at rsyslog", func() bool { return len(received()) == 35 })
	first := []int64{}
	seen := map[int64]bool{}
	for _, s := range rs.Lines() {
		m := syslogLine.FindStringSubmatch(s)
		idx, _ := strconv.ParseInt(m[6], 10, 64)
		if !seen[idx] {
			seen[idx] = true
			first = append(first, idx)
		}
	}
	for i, idx := range first {
		if idx != int64(i) {
			t.Fatalf("first arrivals %v: out of order", first)
		}
	}
	t.Logf("%d messages for 35 entries (repeats after the receiver restarted: %d)", len(rs.Lines()), len(rs.Lines())-35)
}
