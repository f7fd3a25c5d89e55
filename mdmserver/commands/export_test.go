package commands

import "github.com/prometheus/client_golang/prometheus"

// What the external tests (package commands_test, which may import a storage backend) read of
// the package's insides.

// PushResultLabels are the "result" labels of hale_apns_pushes_total.
var PushResultLabels = struct{ Sent, NoCert, NoToken, Rejected, Failed string }{pushSent, pushNoCert, pushNoToken, pushRejected, pushFailed}

// Pushes returns d's push counter (nil without WithPushMetrics).
func (d *Dispatcher) Pushes() *prometheus.CounterVec { return d.pushes }

// PushQueueRunning reports whether RunPushes is taking pushes.
func (d *Dispatcher) PushQueueRunning() bool { return d.pending.running.Load() }

// PushQueueLen is how many devices wait for a background push.
func (d *Dispatcher) PushQueueLen() int { return d.pending.len() }
