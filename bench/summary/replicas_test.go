package main

import (
	"strings"
	"testing"
)

// replicasJSON is bench/replicas's -json output, cut to what the summary reads.
const replicasJSON = `{"devices":2000,"action":"lock",
	"lag":{"samples":300,"p50_ms":1.3,"p90_ms":9.1,"p99_ms":41.7,"max_ms":60.2},
	"call":{"samples":300,"p50_ms":16.0,"p90_ms":29.0,"p99_ms":93.1,"max_ms":95.0},
	"idle":{"requests":9000,"errors":0,"requests_per_second":1800,"p99_ms":60.5},
	"busy":{"requests":4500,"errors":2,"requests_per_second":900,"p99_ms":121},
	"busy_locks_per_second":19.6,"busy_reports_per_second":48.2,
	"busy_lag":{"samples":100,"p99_ms":350},"busy_lag_call":{"samples":100,"p99_ms":1400},"busy_lag_reports_per_second":61.4}`

func init() { outputs["replicas.json"] = replicasJSON }

func TestSummarizeReplicas(t *testing.T) {
	rows, err := summarize(writeOutputs(t, outputs))
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	write(&b, rows)
	table := b.String()
	for _, want := range []string{
		"| Lock on the primary to deny on an access replica (PostgreSQL), p99, 2,000 devices | 41.7 ms | 93.1 ms (the lock call's own round trip) | 0.448x | p99 < 1000 ms | yes |",
		"| Lock on the primary to deny on an access replica (PostgreSQL), p99, 2,000 devices, primary taking 61 reports/s | 350 ms | 1.40 s (the lock call's own round trip, same load) | 0.250x | p99 < 1000 ms | yes |",
		"| Access replica on PostgreSQL, primary taking 20 locks/s and 48 reports/s: requests/s | 900/s | 1,800/s (same replica, primary idle) | 0.500x | none set | — |",
		"| Access replica on PostgreSQL, primary taking 20 locks/s and 48 reports/s: p99 latency | 121 ms | 60.5 ms (same replica, primary idle) | 2.00x | none set | — |",
		"| Access replica on PostgreSQL, primary taking 20 locks/s and 48 reports/s: failed requests | 2 | 0 (same replica, primary idle) | — | 0 on both | **NO** |",
	} {
		if !strings.Contains(table, want) {
			t.Errorf("table lacks %q:\n%s", want, table)
		}
	}
}

// A replicas run without samples or without requests in a phase fails the summary.
func TestSummarizeReplicasMissing(t *testing.T) {
	for content, want := range map[string]string{
		`{"action":"lock","lag":{"samples":0},"call":{"samples":0}}`:                                                                              "replicas.json: no lock-to-deny samples",
		`{"action":"wipe","lag":{"samples":3},"call":{"samples":3}}`:                                                                              "replicas.json: no wipe-to-deny samples",
		`{"action":"lock","lag":{"samples":3},"call":{"samples":3},"busy_lag":{"samples":3},"busy_lag_call":{"samples":3},"idle":{"requests":5}}`: "replicas.json: a phase made no requests (idle 5, busy 0)",
		`{`: "replicas.json: unexpected end of JSON input",
	} {
		outs := map[string]string{}
		for k, v := range outputs {
			outs[k] = v
		}
		outs["replicas.json"] = content
		if _, err := summarize(writeOutputs(t, outs)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err = %v, want it to say %q", content, err, want)
		}
	}
}
