package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// outputs is one run's raw outputs, cut to what the summary reads, in the harnesses' formats.
var outputs = map[string]string{
	"checkin.json": `[{"backend":"bbolt","devices":1000,"errors":0,"checkins_per_second":1125,"size_rounds":10,"bytes_per_device":16777,"live_bytes_per_device":11002},
		{"backend":"diskv","devices":1000,"errors":0,"checkins_per_second":632},
		{"backend":"inmem","devices":1000,"errors":0,"checkins_per_second":1496},
		{"backend":"postgres","devices":1000,"errors":0,"checkins_per_second":540,"size_rounds":10,"bytes_per_device":20100,"live_bytes_per_device":9120},
		{"backend":"nanomdm-pgsql","devices":1000,"errors":0,"checkins_per_second":600,"size_rounds":10,"bytes_per_device":8000,"live_bytes_per_device":7000},
		{"backend":"postgres-2","devices":1000,"errors":0,"checkins_per_second":500}]`,
	"reeval.out": "BenchmarkReevaluateVsRead100k-2   \t       3\t1455887075 ns/op\t         1.930 ratio\t 496796250 read-ns/pass\t 958992406 reeval-ns/pass\t302625808 B/op\n" +
		"ok  \tgithub.com/halemdm/hale/mdmserver/compliance\t13.117s\n",
	"events.out": "BenchmarkReevaluateWithEvents/hook=none-2 \t 4\t 117000000 ns/op\n" +
		"BenchmarkReevaluateWithEvents/hook=events-2 \t 4\t 590000000 ns/op\n",
	"evaluate.out": "BenchmarkEvaluateDecodeBaseline/compliant-2 \t 56292\t 31056 ns/op\t 1659 B/op\t 37 allocs/op\n" +
		"BenchmarkEvaluateDecodeBaseline/noncompliant-2 \t 39802\t 30128 ns/op\t 1944 B/op\t 39 allocs/op\n" +
		"BenchmarkEvaluate/compliant-2 \t 3145322\t 334.5 ns/op\t 0 B/op\t 0 allocs/op\n" +
		"BenchmarkEvaluate/noncompliant-2 \t 2279745\t 524.9 ns/op\t 144 B/op\t 3 allocs/op\n",
	"android.out": "BenchmarkStatusReport-2 \t 44361\t 35212 ns/op\t 5408 B/op\t 62 allocs/op\n" +
		"BenchmarkStatusReportDecodeBaseline-2 \t 55429\t 31640 ns/op\t 4120 B/op\t 42 allocs/op\n",
	"lookup.out": "BenchmarkLookupJSON-2 \t13141226\t 89.24 ns/op\t 0 B/op\t 0 allocs/op\n" +
		"BenchmarkLookupJSONBaseline/syncmap-2 \t35367044\t 42.05 ns/op\t 0 B/op\t 0 allocs/op\n",
	"access.json": `{"devices":1000000,"baseline":{"requests":486571,"errors":0,"requests_per_second":24327,"p99_ms":5.674},
		"access":{"requests":503733,"errors":0,"requests_per_second":25178,"p99_ms":5.628}}`,
	"revocation-1.out": "200 agent devices enrolled and compliant; wiping them, 1 at a time\n" +
		"measure                    samples    p50 ms    p99 ms    max ms\n" +
		"wipe call (baseline)           200      1.95      4.28      4.28\n" +
		"wipe -> SET at backend         200      1.59      3.97      4.66\n",
	"revocation-8.out": "200 agent devices enrolled and compliant; wiping them, 8 at a time\n" +
		"wipe call (baseline)           200      3.26     29.89     30.54\n" +
		"wipe -> SET at backend         200     15.00   1033.71   1036.87\n",
	"ddmstatus.out": "20 iPhones on declarative management, compliant under the HIPAA example; 200 passcode removals\n" +
		"measure                        samples    p50 ms    p99 ms    max ms\n" +
		"status report (baseline)           200      6.94     22.01     22.01\n" +
		"status report -> access deny       200      7.20     22.36     22.36\n",
	"desktoptoken.out": "BenchmarkTokenThroughSocket-2 \t 500\t 1498456 ns/op\t 509400 direct-ns/token\t 988800 socket-ns/token\t 1.941 socket/direct\n",
	"audit.out": "BenchmarkAppend/merkle-2 \t 1561\t 762064 ns/op\n" +
		"BenchmarkAppend/plain-put-2 \t 1750\t 646730 ns/op\n" +
		"BenchmarkAppendTx/merkle-2 \t 100\t 11098497 ns/op\t 11098 ns/entry\n" +
		"BenchmarkAppendTx/plain-put-2 \t 160\t 6934241 ns/op\t 6934 ns/entry\n",
	"store.out": "BenchmarkBucketSet/bbolt-2 \t 300\t 3465825 ns/op\n" +
		"BenchmarkBucketSet/kvdiskv-2 \t 300\t 89936 ns/op\n" +
		"BenchmarkBucketGet/bbolt-2 \t 300\t 2336 ns/op\n" +
		"BenchmarkBucketGet/kvdiskv-2 \t 300\t 26149 ns/op\n" +
		"BenchmarkTxnCommit/kvdiskv-2 \t 300\t 627489 ns/op\n" +
		"BenchmarkTxnCommit/bbolt-2 \t 300\t 800498 ns/op\n",
	"appproof.out": "BenchmarkAppProof/register-2 \t 1063\t 1988565 ns/op\n" +
		"BenchmarkAppProof/assertion-2 \t 22653\t 99195 ns/op\n" +
		"BenchmarkAppProof/playintegrity-2 \t 15709\t 159017 ns/op\n" +
		"BenchmarkAppProof/es256-jwt-2 \t 22944\t 113097 ns/op\n",
	"remediation.out": "BenchmarkDeviceAnswer/cached-2 \t 417922\t 3077 ns/op\n" +
		"BenchmarkDeviceAnswer/remediation-2 \t 15432\t 65538 ns/op\n",
	"pushes.out": "BenchmarkPushRate/sequential-2 \t 1\t 10905829631 ns/op\t 18.34 pushes/s\n" +
		"BenchmarkPushRate/queued-2 \t 1\t 1235808265 ns/op\t 1618 pushes/s\n",
	"auditsink.out": "BenchmarkAppendWithSink/none-2 \t 300\t 749561 ns/op\n" +
		"BenchmarkAppendWithSink/file-2 \t 300\t 638367 ns/op\n",
	"auditburst.out":  "BenchmarkBurstLag-2 \t 1\t 9924722083 ns/op\t 9919 burst-ms\t 1.000 drain-after-ms\t 278.0 max-lag-entries\n",
	"backup.out":      "BenchmarkBackup100k-2 \t 1\t 1830167348 ns/op\t 8.348 backup-MiB\t 495.0 backup-ms\t 60.0 db-file-MiB\t 80.0 file-copy-ms\t 22.73 p99-during-ms\t 22.48 p99-idle-ms\t 1.011 p99-ratio\n",
	"agent-build.out": "mdmagent binary (stripped): 7905545 bytes\n",
	"idle.out":        "minimal Go program binary (stripped): 1048576 bytes\nVmRSS:\t    1536 kB\n",
	"collect.out": "BenchmarkCollectCycleBaseline-2 \t 50\t 502513 ns/op\t 0.7092 cpu-ms/cycle\t 16.00 files\n" +
		"BenchmarkCollectCycle-2 \t 50\t 1481899 ns/op\t 0.003441 %core@60s\t 2.064 cpu-ms/cycle\t 1230 report-bytes\n",
	"footprint-inproc.out": "    footprint_linux_test.go:125: FOOTPRINT cycles=500 collections=999 steady VmRSS=17.2 MiB collect-cpu/cycle=2.4 ms\n",
	"footprint-binary.out": "FOOTPRINT binary=/tmp/x/mdmagent cycles=3 steady VmRSS=13.2 MiB\n",
	"console.out": "BenchmarkDeviceListPage100k/first-2 \t 2000\t 2632447 ns/op\t 11599000 api-p99-ns\t 15252000 console-p99-ns\t 1.315 p99-ratio\n" +
		"BenchmarkDeviceListPage100k/middle-2 \t 2000\t 2225910 ns/op\t 8439000 api-p99-ns\t 13157000 console-p99-ns\t 1.559 p99-ratio\n",
}

func writeOutputs(t *testing.T, outs map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, s := range outs {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestSummarize(t *testing.T) {
	rows, err := summarize(writeOutputs(t, outputs))
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	write(&b, rows)
	table := b.String()
	for _, want := range []string{
		"| Apple MDM check-ins/s, 1,000 devices, Hale's bbolt store | 1,125/s | 632/s (nanomdm diskv) | 1.78x | ≥ 1.0x | yes |",
		"| Apple MDM check-ins/s, 1,000 devices, Hale on PostgreSQL (commands sealed) | 540/s | 600/s (nanomdm's pgsql storage) | 0.900x | ≥ 0.9x | yes |",
		"| Database size per device after 10 check-in rounds, 1,000 devices, PostgreSQL: live data (after VACUUM FULL) | 9.12 KB | 11.0 KB (bbolt: pages in use) | 0.829x | none set | — |",
		"| Database size per device after 10 check-in rounds, 1,000 devices, PostgreSQL: on disk as the run left it | 20.1 KB | 16.8 KB (bbolt: the hale.db file) | 1.20x | none set | — |",
		"| Policy change, 100,000 devices: re-evaluation pass | 959 ms | 497 ms (read pass) | 1.93x | ≤ 2.0x | yes |",
		"| Policy evaluation, one compliant device | 334 ns | 31.1 µs (decoding its posture JSON) | 0.011x | none set | — |",
		"| Android STATUS_REPORT push: parse, validate, map to posture | 35.2 µs | 31.6 µs (decoding it into the client's Device) | 1.11x | none set | — |",
		"| Access API over HTTPS, 1,000,000 devices, 32 clients: requests/s | 25,178/s |",
		"| Wipe to session-revoked SET verified at the backend, p99, 8 in flight | 1.03 s | 29.9 ms (the wipe call's own round trip) | 34.6x | p99 < 1000 ms | **NO** |",
		"| Agent posture collection on this machine, CPU per cycle | 2.06 ms | 0.709 ms (same files and tools, nothing parsed) | 2.91x |",
		"| App report: App Attest assertion verified | 99.2 µs | 113 µs (one plain ES256 JWT verified) | 0.877x | none set | — |",
		"| DDM status report (passcode removed) to access deny, p99 | 22.4 ms | 22.0 ms (the status report's own round trip) | 1.02x | p99 < 1000 ms | yes |",
		"| mdmagent steady RSS, real binary at production pacing | 13.2 MiB | 1.5 MiB (minimal Go program) | 8.80x | ≤ 20 MB | yes |",
		"| Desktop app token through the agent's socket (nonce, proof, peer check, server) | 989 µs | 509 µs (the agent's own request to the server) | 1.94x | none set | — |",
		"| APNs pushes/s, fake APNs answering in 50 ms | 1,618/s | 18/s (one push at a time, as before) | 88.2x | ≥ 2,000/s | **NO** |",
		"| Backup of 100,000 devices: admin API p99 during the backup | 22.7 ms | 22.5 ms (same requests, idle) | 1.01x | ≤ 2.0x | yes |",
		"| Console device list page, 100,000 devices, first page of 50: server time p99 | 15.3 ms | 11.6 ms (same query, JSON API handler) | 1.31x | ≤ 1.5x | yes |",
		"| Console device list page, 100,000 devices, middle page of 50: server time p99 | 13.2 ms | 8.44 ms (same query, JSON API handler) | 1.56x | ≤ 1.5x | **NO** |",
	} {
		if !strings.Contains(table, want+"\n") && !strings.Contains(table, want) {
			t.Errorf("table lacks %q:\n%s", want, table)
		}
	}
	if n := strings.Count(table, "\n"); n != 2+len(rows) || len(rows) != 47 {
		t.Errorf("%d rows, %d lines:\n%s", len(rows), n, table)
	}
}

// A figure missing from its output fails the summary and names the file and the figure.
func TestSummarizeMissingFigure(t *testing.T) {
	for _, tc := range []struct{ file, content, want string }{
		{"lookup.out", "BenchmarkLookupJSON-2 \t1\t 89.24 ns/op\n", "lookup.out: no ns/op figure for BenchmarkLookupJSONBaseline/syncmap"},
		{"revocation-8.out", "wipe call (baseline) 200 3.26 29.89 30.54\n", "revocation-8.out: no wipes in flight"},
		{"footprint-binary.out", "", "footprint-binary.out: no mdmagent steady RSS"},
		{"checkin.json", `[{"backend":"bbolt","checkins_per_second":1}]`, `checkin.json: no check-in throughput for backend "diskv"`},
		{"checkin.json", `[{"backend":"bbolt","checkins_per_second":1,"size_rounds":10,"bytes_per_device":1,"live_bytes_per_device":1},{"backend":"diskv","checkins_per_second":1},{"backend":"inmem","checkins_per_second":1}]`, `checkin.json: no check-in throughput for backend "nanomdm-pgsql"`},
		{"checkin.json", `[{"backend":"bbolt","checkins_per_second":1},{"backend":"diskv","checkins_per_second":1},{"backend":"inmem","checkins_per_second":1},{"backend":"postgres","checkins_per_second":1,"size_rounds":10,"bytes_per_device":1,"live_bytes_per_device":1},{"backend":"nanomdm-pgsql","checkins_per_second":1}]`, `checkin.json: no database size per device for backend "bbolt"`},
		{"collect.out", "--- FAIL: BenchmarkCollectCycle\n", "collect.out: no cpu-ms/cycle figure for BenchmarkCollectCycle"},
	} {
		outs := map[string]string{}
		for k, v := range outputs {
			outs[k] = v
		}
		outs[tc.file] = tc.content
		_, err := summarize(writeOutputs(t, outs))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want it to say %q", tc.file, err, tc.want)
		}
	}
	outs := map[string]string{}
	for k, v := range outputs {
		if k != "access.json" {
			outs[k] = v
		}
	}
	if _, err := summarize(writeOutputs(t, outs)); err == nil || !strings.Contains(err.Error(), "access.json") {
		t.Errorf("without access.json: err = %v", err)
	}
}

func TestParseBench(t *testing.T) {
	m := parseBench("goos: linux\nBenchmarkA/b=c-16 \t 10\t 1.5 ns/op\t 3 B/op\nBenchmarkBad x y z\nok \tpkg\t1s\n")
	if len(m) != 1 || m["BenchmarkA/b=c"]["ns/op"] != 1.5 || m["BenchmarkA/b=c"]["B/op"] != 3 {
		t.Fatalf("parsed %v", m)
	}
}
