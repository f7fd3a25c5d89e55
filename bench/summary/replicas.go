package main

import (
	"fmt"
	"strconv"
)

// replicas reads bench/replicas's JSON: a lock on the primary to the replica's deny, and the
// replica's access API throughput with the primary busy against idle.
func (c *collector) replicas() {
	const file = "replicas.json"
	type lag struct {
		N     int     `json:"samples"`
		P99ms float64 `json:"p99_ms"`
	}
	type phase struct {
		Requests  int64   `json:"requests"`
		Errors    int64   `json:"errors"`
		PerSecond float64 `json:"requests_per_second"`
		P99ms     float64 `json:"p99_ms"`
	}
	var r struct {
		Devices     int     `json:"devices"`
		Action      string  `json:"action"`
		Lag         lag     `json:"lag"`
		Call        lag     `json:"call"`
		Idle        phase   `json:"idle"`
		Busy        phase   `json:"busy"`
		BusyLocksPS float64 `json:"busy_locks_per_second"`
		BusyRepsPS  float64 `json:"busy_reports_per_second"`
		BusyLag     lag     `json:"busy_lag"`
		BusyLagCall lag     `json:"busy_lag_call"`
		BusyLagReps float64 `json:"busy_lag_reports_per_second"`
	}
	if !c.jsonFile(file, &r) {
		return
	}
	if r.Lag.N == 0 || r.Call.N == 0 || r.BusyLag.N == 0 || r.BusyLagCall.N == 0 {
		c.missing(file, "no %s-to-deny samples", r.Action)
		return
	}
	if r.Idle.Requests == 0 || r.Busy.Requests == 0 {
		c.missing(file, "a phase made no requests (idle %d, busy %d)", r.Idle.Requests, r.Busy.Requests)
		return
	}
	lagGoal := goal{"p99 < 1000 ms", func(ours, _, _ float64) bool { return ours < 1000 }}
	lagWhat := fmt.Sprintf("%s on the primary to deny on an access replica (PostgreSQL), p99, %s devices", capital(r.Action), thousands(r.Devices))
	c.add(lagWhat, r.Lag.P99ms, r.Call.P99ms, "the "+r.Action+" call's own round trip", millis, lagGoal)
	c.add(fmt.Sprintf("%s, primary taking %.0f reports/s", lagWhat, r.BusyLagReps), r.BusyLag.P99ms, r.BusyLagCall.P99ms,
		"the "+r.Action+" call's own round trip, same load", millis, lagGoal)
	what := fmt.Sprintf("Access replica on PostgreSQL, primary taking %.0f %ss/s and %.0f reports/s", r.BusyLocksPS, r.Action, r.BusyRepsPS)
	const base = "same replica, primary idle"
	c.add(what+": requests/s", r.Busy.PerSecond, r.Idle.PerSecond, base, perSecond, noGoal)
	c.add(what+": p99 latency", r.Busy.P99ms, r.Idle.P99ms, base, millis, noGoal)
	c.rows = append(c.rows, row{What: what + ": failed requests", Ours: strconv.FormatInt(r.Busy.Errors, 10),
		Base: strconv.FormatInt(r.Idle.Errors, 10) + " (" + base + ")", Ratio: "—", Goal: "0 on both",
		Met: verdict(r.Busy.Errors == 0 && r.Idle.Errors == 0)})
}

// capital is s with its first letter upper case (ASCII).
func capital(s string) string {
	if s == "" || s[0] < 'a' || s[0] > 'z' {
		return s
	}
	return string(s[0]-'a'+'A') + s[1:]
}
