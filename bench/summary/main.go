// Command summary turns the raw outputs bench/run keeps in one directory into the summary
// table at the top of bench/README.md: one row per figure, next to the baseline measured in the
// same run, their ratio, the goal and whether it is met. A figure missing from its output is an
// error that names the file and the figure, never a blank cell, so a harness that changed its
// output or failed half-way stops the report instead of publishing a hole.
//
//	go run ./bench/summary -dir DIR
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

func main() {
	dir := flag.String("dir", "", "the directory holding bench/run's raw outputs")
	flag.Parse()
	if *dir == "" {
		fmt.Fprintln(os.Stderr, "usage: summary -dir DIR")
		os.Exit(2)
	}
	rows, err := summarize(*dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "summary:", err)
		os.Exit(1)
	}
	write(os.Stdout, rows)
}

// row is one line of the table; every cell is already formatted.
type row struct {
	What, Ours, Base, Ratio, Goal, Met string
}

// goal is a target for a figure: text for the table, and the test.
type goal struct {
	text string
	met  func(ours, base, ratio float64) bool
}

var noGoal = goal{text: "none set"}

// atLeast and atMost are goals on the ratio.
func atLeast(r float64) goal {
	return goal{fmt.Sprintf("≥ %.1fx", r), func(_, _, ratio float64) bool { return ratio >= r }}
}

func atMost(r float64) goal {
	return goal{fmt.Sprintf("≤ %.1fx", r), func(_, _, ratio float64) bool { return ratio <= r }}
}

// collector reads the outputs and remembers every figure it could not find.
type collector struct {
	dir    string
	benchs map[string]map[string]map[string]float64 // file -> benchmark -> unit -> value
	texts  map[string]string
	errs   []error
	rows   []row
}

func summarize(dir string) ([]row, error) {
	c := &collector{dir: dir, benchs: map[string]map[string]map[string]float64{}, texts: map[string]string{}}
	c.checkins()
	c.policyChange()
	c.evaluate()
	c.android()
	c.lookup()
	c.access()
	c.revocation()
	c.replicas()
	c.ddmStatus()
	c.audit()
	c.store()
	c.appProof()
	c.desktopToken()
	c.remediation()
	c.pushes()
	c.auditSink()
	c.backup()
	c.agent()
	c.console()
	if len(c.errs) > 0 {
		return nil, fmt.Errorf("%d figures missing:\n%w", len(c.errs), errors.Join(c.errs...))
	}
	return c.rows, nil
}

// add appends a row comparing ours to base (same unit), formatted by f.
func (c *collector) add(what string, ours, base float64, baseName string, f func(float64) string, g goal) {
	ratio := ours / base
	r := row{What: what, Ours: f(ours), Base: f(base) + " (" + baseName + ")", Ratio: ratioText(ratio), Goal: g.text, Met: "—"}
	if base == 0 || math.IsNaN(ratio) || math.IsInf(ratio, 0) {
		r.Ratio = "—"
	}
	if g.met != nil {
		r.Met = verdict(g.met(ours, base, ratio))
	}
	c.rows = append(c.rows, r)
}

func verdict(ok bool) string {
	if ok {
		return "yes"
	}
	return "**NO**"
}

func (c *collector) missing(file, format string, args ...any) float64 {
	c.errs = append(c.errs, fmt.Errorf("%s: %s", file, fmt.Sprintf(format, args...)))
	return math.NaN()
}

// text returns a raw output file, recording an error when it cannot be read.
func (c *collector) text(file string) string {
	if t, ok := c.texts[file]; ok {
		return t
	}
	b, err := os.ReadFile(filepath.Join(c.dir, file))
	if err != nil {
		c.errs = append(c.errs, err)
	}
	c.texts[file] = string(b)
	return string(b)
}

// bench returns a metric (unit as `go test -bench` prints it: "ns/op", "cpu-ms/cycle") of a
// benchmark (full name without the -GOMAXPROCS suffix) in a `go test -bench` output file.
func (c *collector) bench(file, name, unit string) float64 {
	m, ok := c.benchs[file]
	if !ok {
		m = parseBench(c.text(file))
		c.benchs[file] = m
	}
	v, ok := m[name][unit]
	if !ok {
		return c.missing(file, "no %s figure for %s", unit, name)
	}
	return v
}

var procsSuffix = regexp.MustCompile(`-\d+$`)

// parseBench reads the result lines of `go test -bench` output: a name, the iteration count,
// then value-unit pairs.
func parseBench(out string) map[string]map[string]float64 {
	m := map[string]map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") || len(f)%2 != 0 {
			continue
		}
		if _, err := strconv.ParseInt(f[1], 10, 64); err != nil {
			continue
		}
		name := procsSuffix.ReplaceAllString(f[0], "")
		units := map[string]float64{}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				continue
			}
			units[f[i+1]] = v
		}
		m[name] = units
	}
	return m
}

// match returns the float captured by re's first group in a file, or records it as missing.
func (c *collector) match(file string, re *regexp.Regexp, what string) float64 {
	sub := re.FindStringSubmatch(c.text(file))
	if sub == nil {
		return c.missing(file, "no %s (want a line matching %s)", what, re)
	}
	v, err := strconv.ParseFloat(sub[1], 64)
	if err != nil {
		return c.missing(file, "%s: %v", what, err)
	}
	return v
}

// jsonFile decodes a harness's -json output.
func (c *collector) jsonFile(file string, v any) bool {
	b, err := os.ReadFile(filepath.Join(c.dir, file))
	if err == nil {
		err = json.Unmarshal(b, v)
	}
	if err != nil {
		c.errs = append(c.errs, fmt.Errorf("%s: %w", file, err))
		return false
	}
	return true
}

func (c *collector) checkins() {
	const file = "checkin.json"
	var rs []struct {
		Backend        string  `json:"backend"`
		Devices        int     `json:"devices"`
		Errors         int64   `json:"errors"`
		PerSecond      float64 `json:"checkins_per_second"`
		SizeRounds     int     `json:"size_rounds"`
		BytesPerDevice float64 `json:"bytes_per_device"`
		LiveBytes      float64 `json:"live_bytes_per_device"`
	}
	if !c.jsonFile(file, &rs) {
		return
	}
	type figures struct {
		perSecond, bytes, live float64
		rounds                 int
	}
	by := map[string]figures{}
	devices := 0
	for _, r := range rs {
		if r.Errors != 0 {
			c.missing(file, "%s: %d failed requests; its throughput is not a figure", r.Backend, r.Errors)
		}
		by[r.Backend], devices = figures{r.PerSecond, r.BytesPerDevice, r.LiveBytes, r.SizeRounds}, r.Devices
	}
	get := func(b string) float64 {
		v, ok := by[b]
		if !ok || v.perSecond <= 0 {
			return c.missing(file, "no check-in throughput for backend %q", b)
		}
		return v.perSecond
	}
	size := func(b string, live bool) float64 {
		v, ok := by[b]
		n := v.bytes
		if live {
			n = v.live
		}
		if !ok || v.rounds == 0 || n <= 0 {
			return c.missing(file, "no database size per device for backend %q", b)
		}
		return n
	}
	bbolt := get("bbolt")
	what := fmt.Sprintf("Apple MDM check-ins/s, %s devices, Hale's bbolt store", thousands(devices))
	c.add(what, bbolt, get("diskv"), "nanomdm diskv", perSecond, atLeast(1))
	c.add(what, bbolt, get("inmem"), "nanomdm in-memory", perSecond, atLeast(0.5))
	c.add(fmt.Sprintf("Apple MDM check-ins/s, %s devices, Hale on PostgreSQL (commands sealed)", thousands(devices)),
		get("postgres"), get("nanomdm-pgsql"), "nanomdm's pgsql storage", perSecond, atLeast(0.9))
	c.add(fmt.Sprintf("Apple MDM check-ins/s, %s devices, two Hale servers on one PostgreSQL database (one machine)", thousands(devices)),
		get("postgres-2"), get("postgres"), "one server", perSecond, noGoal)
	rounds := by["postgres"].rounds
	if r := by["bbolt"].rounds; r != rounds {
		c.missing(file, "database sizes taken after different rounds: bbolt %d, postgres %d", r, rounds)
	}
	sizes := fmt.Sprintf("Database size per device after %d check-in rounds, %s devices, PostgreSQL", rounds, thousands(devices))
	c.add(sizes+": live data (after VACUUM FULL)", size("postgres", true), size("bbolt", true), "bbolt: pages in use", kilobytes, noGoal)
	c.add(sizes+": on disk as the run left it", size("postgres", false), size("bbolt", false), "bbolt: the hale.db file", kilobytes, noGoal)
}

func (c *collector) policyChange() {
	const file = "reeval.out"
	const b = "BenchmarkReevaluateVsRead100k"
	c.add("Policy change, 100,000 devices: re-evaluation pass", c.bench(file, b, "reeval-ns/pass"),
		c.bench(file, b, "read-ns/pass"), "read pass", duration, atMost(2))
	const ev = "events.out"
	c.add("Policy change, 5,000 of 10,000 devices flip: pass with one SET per flip to the outbox",
		c.bench(ev, "BenchmarkReevaluateWithEvents/hook=events", "ns/op"),
		c.bench(ev, "BenchmarkReevaluateWithEvents/hook=none", "ns/op"), "same pass, no hook", duration, noGoal)
}

func (c *collector) console() {
	const file = "console.out"
	for _, page := range []string{"first", "middle"} {
		b := "BenchmarkDeviceListPage100k/" + page
		c.add("Console device list page, 100,000 devices, "+page+" page of 50: server time p99", c.bench(file, b, "console-p99-ns"),
			c.bench(file, b, "api-p99-ns"), "same query, JSON API handler", duration, atMost(1.5))
	}
}

func (c *collector) evaluate() {
	const file = "evaluate.out"
	for _, k := range []string{"compliant", "noncompliant"} {
		c.add("Policy evaluation, one "+k+" device", c.bench(file, "BenchmarkEvaluate/"+k, "ns/op"),
			c.bench(file, "BenchmarkEvaluateDecodeBaseline/"+k, "ns/op"), "decoding its posture JSON", duration, noGoal)
	}
}

func (c *collector) android() {
	const file = "android.out"
	c.add("Android STATUS_REPORT push: parse, validate, map to posture", c.bench(file, "BenchmarkStatusReport", "ns/op"),
		c.bench(file, "BenchmarkStatusReportDecodeBaseline", "ns/op"), "decoding it into the client's Device", duration, noGoal)
}

func (c *collector) lookup() {
	const file = "lookup.out"
	c.add("Access decision lookup in process, 100,000 devices, parallel readers",
		c.bench(file, "BenchmarkLookupJSON", "ns/op"),
		c.bench(file, "BenchmarkLookupJSONBaseline/syncmap", "ns/op"), "sync.Map of the same answers", duration, noGoal)
}

func (c *collector) access() {
	const file = "access.json"
	type phase struct {
		PerSecond float64 `json:"requests_per_second"`
		P99ms     float64 `json:"p99_ms"`
		Errors    int64   `json:"errors"`
		Requests  int64   `json:"requests"`
	}
	var r struct {
		Devices  int   `json:"devices"`
		Baseline phase `json:"baseline"`
		Access   phase `json:"access"`
	}
	if !c.jsonFile(file, &r) {
		return
	}
	if r.Access.Requests == 0 || r.Baseline.Requests == 0 {
		c.missing(file, "a phase made no requests (access %d, baseline %d)", r.Access.Requests, r.Baseline.Requests)
		return
	}
	what := fmt.Sprintf("Access API over HTTPS, %s devices, 32 clients", thousands(r.Devices))
	const base = "constant handler, same server"
	c.add(what+": requests/s", r.Access.PerSecond, r.Baseline.PerSecond, base, perSecond, atLeast(0.8))
	c.add(what+": p99 latency", r.Access.P99ms, r.Baseline.P99ms, base, millis, atMost(2))
	errs := row{What: what + ": failed requests", Ours: strconv.FormatInt(r.Access.Errors, 10),
		Base: strconv.FormatInt(r.Baseline.Errors, 10) + " (" + base + ")", Ratio: "—", Goal: "0 on both",
		Met: verdict(r.Access.Errors == 0 && r.Baseline.Errors == 0)}
	c.rows = append(c.rows, errs)
}

var (
	revSET      = regexp.MustCompile(`(?m)^wipe -> SET at backend\s+\d+\s+[\d.]+\s+([\d.]+)\s`)
	revCall     = regexp.MustCompile(`(?m)^wipe call \(baseline\)\s+\d+\s+[\d.]+\s+([\d.]+)\s`)
	revInFlight = regexp.MustCompile(`wiping them, (\d+) at a time`)
)

func (c *collector) revocation() {
	for _, file := range []string{"revocation-1.out", "revocation-8.out"} {
		n := c.match(file, revInFlight, "wipes in flight")
		set := c.match(file, revSET, "wipe -> SET p99")
		call := c.match(file, revCall, "wipe call p99")
		c.add(fmt.Sprintf("Wipe to session-revoked SET verified at the backend, p99, %.0f in flight", n), set, call,
			"the wipe call's own round trip", millis,
			goal{"p99 < 1000 ms", func(ours, _, _ float64) bool { return ours < 1000 }})
	}
}

var (
	ddmFlip   = regexp.MustCompile(`(?m)^status report -> access deny\s+\d+\s+[\d.]+\s+([\d.]+)\s`)
	ddmReport = regexp.MustCompile(`(?m)^status report \(baseline\)\s+\d+\s+[\d.]+\s+([\d.]+)\s`)
)

func (c *collector) ddmStatus() {
	const file = "ddmstatus.out"
	c.add("DDM status report (passcode removed) to access deny, p99", c.match(file, ddmFlip, "status -> deny p99"),
		c.match(file, ddmReport, "status report p99"), "the status report's own round trip", millis,
		goal{"p99 < 1000 ms", func(ours, _, _ float64) bool { return ours < 1000 }})
}

func (c *collector) audit() {
	const file = "audit.out"
	c.add("Audit append, one entry per fsynced transaction", c.bench(file, "BenchmarkAppend/merkle", "ns/op"),
		c.bench(file, "BenchmarkAppend/plain-put", "ns/op"), "plain bbolt put", duration, noGoal)
	c.add("Audit append, 1,000 entries per transaction, per entry", c.bench(file, "BenchmarkAppendTx/merkle", "ns/entry"),
		c.bench(file, "BenchmarkAppendTx/plain-put", "ns/entry"), "plain bbolt put", duration, noGoal)
}

func (c *collector) store() {
	const file = "store.out"
	for _, op := range []struct{ bench, what string }{
		{"BucketSet", "Store: one key set (bbolt fsyncs, diskv does not)"},
		{"BucketGet", "Store: one key get"},
		{"TxnCommit", "Store: nanomdm-like transaction (2 reads, 4 writes, 1 delete)"},
	} {
		c.add(op.what, c.bench(file, "Benchmark"+op.bench+"/bbolt", "ns/op"),
			c.bench(file, "Benchmark"+op.bench+"/kvdiskv", "ns/op"), "nanolib diskv", duration, noGoal)
	}
}

func (c *collector) remediation() {
	const file = "remediation.out"
	c.add("Access answer for a denied device with remediation (Accept-Language: es)", c.bench(file, "BenchmarkDeviceAnswer/remediation", "ns/op"),
		c.bench(file, "BenchmarkDeviceAnswer/cached", "ns/op"), "the cached answer", duration, noGoal)
}

func (c *collector) pushes() {
	const file = "pushes.out"
	queued := c.bench(file, "BenchmarkPushRate/queued", "pushes/s")
	sequential := c.bench(file, "BenchmarkPushRate/sequential", "pushes/s")
	c.add("APNs pushes/s, fake APNs answering in 50 ms", queued, sequential, "one push at a time, as before",
		perSecond, goal{"≥ 2,000/s", func(ours, _, _ float64) bool { return ours >= 2000 }})
	const fleet = 200_000
	c.add("Policy change pushed to 200,000 devices (from the rate above)", fleet/queued, fleet/sequential,
		"one push at a time", seconds, goal{"< 120 s", func(ours, _, _ float64) bool { return ours < 120 }})
}

func (c *collector) auditSink() {
	const file = "auditsink.out"
	c.add("Audit append with a file sink streaming", c.bench(file, "BenchmarkAppendWithSink/file", "ns/op"),
		c.bench(file, "BenchmarkAppendWithSink/none", "ns/op"), "no sink", duration, noGoal)
	const burst = "auditburst.out"
	c.add("Audit burst of 10,000 entries: sink's largest lag", c.bench(burst, "BenchmarkBurstLag", "max-lag-entries"),
		10_000, "the burst", count, noGoal)
	c.add("Audit burst of 10,000 entries: all delivered, after the burst ended", c.bench(burst, "BenchmarkBurstLag", "drain-after-ms"),
		c.bench(burst, "BenchmarkBurstLag", "burst-ms"), "the burst's own time", millis, noGoal)
}

func (c *collector) backup() {
	const file = "backup.out"
	c.add("Backup of 100,000 devices: admin API p99 during the backup", c.bench(file, "BenchmarkBackup100k", "p99-during-ms"),
		c.bench(file, "BenchmarkBackup100k", "p99-idle-ms"), "same requests, idle", millis, atMost(2))
	c.add("Backup of 100,000 devices: time to stream it", c.bench(file, "BenchmarkBackup100k", "backup-ms"),
		c.bench(file, "BenchmarkBackup100k", "file-copy-ms"), "reading the database file", millis, noGoal)
	c.add("Backup of 100,000 devices: archive size", c.bench(file, "BenchmarkBackup100k", "backup-MiB")*(1<<20),
		c.bench(file, "BenchmarkBackup100k", "db-file-MiB")*(1<<20), "the database file", mebibytes, noGoal)
}

func (c *collector) appProof() {
	const file = "appproof.out"
	base := c.bench(file, "BenchmarkAppProof/es256-jwt", "ns/op")
	for _, op := range []struct{ bench, what string }{
		{"register", "App instance registration: App Attest attestation verified"},
		{"assertion", "App report: App Attest assertion verified"},
		{"playintegrity", "App instance registration: Play Integrity token verified"},
	} {
		c.add(op.what, c.bench(file, "BenchmarkAppProof/"+op.bench, "ns/op"), base, "one plain ES256 JWT verified", duration, noGoal)
	}
}

func (c *collector) desktopToken() {
	const file = "desktoptoken.out"
	c.add("Desktop app token through the agent's socket (nonce, proof, peer check, server)",
		c.bench(file, "BenchmarkTokenThroughSocket", "socket-ns/token"),
		c.bench(file, "BenchmarkTokenThroughSocket", "direct-ns/token"), "the agent's own request to the server", duration, noGoal)
}

var (
	agentSize = regexp.MustCompile(`mdmagent binary \(stripped\): (\d+) bytes`)
	idleSize  = regexp.MustCompile(`minimal Go program binary \(stripped\): (\d+) bytes`)
	idleRSS   = regexp.MustCompile(`(?m)^VmRSS:\s+(\d+) kB`) // as /proc/PID/status has it
	steadyRSS = regexp.MustCompile(`FOOTPRINT .*steady VmRSS=([\d.]+) MiB`)
)

func (c *collector) agent() {
	c.add("mdmagent binary size", c.match("agent-build.out", agentSize, "mdmagent size"),
		c.match("idle.out", idleSize, "minimal Go binary size"), "minimal Go program", mebibytes, noGoal)
	const file = "collect.out"
	cycle := c.bench(file, "BenchmarkCollectCycle", "cpu-ms/cycle")
	share := c.bench(file, "BenchmarkCollectCycle", "%core@60s")
	c.add("Agent posture collection on this machine, CPU per cycle", cycle,
		c.bench(file, "BenchmarkCollectCycleBaseline", "cpu-ms/cycle"), "same files and tools, nothing parsed",
		func(v float64) string { return sig3(v) + " ms" },
		goal{"< 1% of a core at one cycle a minute", func(float64, float64, float64) bool { return share < 1 }})
	idle := c.match("idle.out", idleRSS, "minimal Go program VmRSS") * (1 << 10)
	rss := goal{"≤ 20 MB", func(ours, _, _ float64) bool { return ours <= 20e6 }}
	c.add("mdmagent steady RSS, real binary at production pacing",
		c.match("footprint-binary.out", steadyRSS, "mdmagent steady RSS")*(1<<20), idle, "minimal Go program", mebibytes, rss)
	c.add("Agent steady RSS, in process, a report every 10 ms",
		c.match("footprint-inproc.out", steadyRSS, "in-process agent steady RSS")*(1<<20), idle, "minimal Go program", mebibytes, rss)
}

func write(w io.Writer, rows []row) {
	var b bytes.Buffer
	b.WriteString("| what | ours | baseline | ratio | goal | met? |\n|---|--:|--:|--:|---|---|\n")
	for _, r := range rows {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s |\n", r.What, r.Ours, r.Base, r.Ratio, r.Goal, r.Met)
	}
	w.Write(b.Bytes())
}

// sig3 formats v with three significant digits and no exponent.
func sig3(v float64) string {
	switch a := math.Abs(v); {
	case a >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case a >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	case a >= 1:
		return strconv.FormatFloat(v, 'f', 2, 64)
	case a >= 0.01:
		return strconv.FormatFloat(v, 'f', 3, 64)
	default:
		return strconv.FormatFloat(v, 'g', 3, 64)
	}
}

func ratioText(r float64) string { return sig3(r) + "x" }

// duration formats nanoseconds.
func duration(ns float64) string {
	switch {
	case ns >= 1e9:
		return sig3(ns/1e9) + " s"
	case ns >= 1e6:
		return sig3(ns/1e6) + " ms"
	case ns >= 1e3:
		return sig3(ns/1e3) + " µs"
	}
	return sig3(ns) + " ns"
}

func millis(ms float64) string   { return duration(ms * 1e6) }
func seconds(s float64) string   { return duration(s * 1e9) }
func count(n float64) string     { return thousands(int(math.Round(n))) }
func perSecond(v float64) string { return thousands(int(math.Round(v))) + "/s" }
func kilobytes(b float64) string { return sig3(b/1000) + " KB" }
func mebibytes(b float64) string { return strconv.FormatFloat(b/(1<<20), 'f', 1, 64) + " MiB" }

// thousands writes n with comma separators.
func thousands(n int) string {
	s, sign := strconv.Itoa(n), ""
	if n < 0 {
		s, sign = s[1:], "-"
	}
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return sign + s
}
