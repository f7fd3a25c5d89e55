package commands

import "github.com/prometheus/client_golang/prometheus"

// What the external tests (package commands_test, which may import a storage backend) read of
// the package's insides.

// PushResultLabels are the "result" labels of hale_apns_pushes_total.
var PushResultLabels = struct{ Sent, NoCert, NoToken, Rejected, Failed string }{pushSent, pushNoCert, pushNoToken, pushRejected, pushFailed}

// Pushes returns d's push counter (nil without WithPushMetrics).
func (d *Dispatcher) Pushes() *prometheus.CounterVec { return d.pushes }
