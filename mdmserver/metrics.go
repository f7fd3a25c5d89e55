package mdmserver

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"
)

var commandsDesc = prometheus.NewDesc("hale_commands",
	"Commands by queue (apple: MDM commands; agent: mdmagent commands) and state, counted in memory as they change.",
	[]string{"queue", "state"}, nil)

// commandStates reports both command queues' counts per state at scrape time. The repositories
// answer them without reading every command (the bbolt store keeps them in memory, moved by each
// committed write), so a scrape reads a few numbers instead of scanning a bucket that holds
// every device's commands.
type commandStates struct{ s *Server }

// Describe implements prometheus.Collector.
func (c commandStates) Describe(ch chan<- *prometheus.Desc) { ch <- commandsDesc }

// Collect implements prometheus.Collector.
func (c commandStates) Collect(ch chan<- prometheus.Metric) {
	ctx := context.Background()
	for queue, count := range map[string]func(context.Context) (map[string]int64, error){
		"apple": c.s.commands.StateCounts,
		"agent": c.s.agentQueue.StateCounts,
	} {
		counts, err := count(ctx)
		if err != nil {
			ch <- prometheus.NewInvalidMetric(commandsDesc, err)
			continue
		}
		for state, n := range counts {
			if state == "" {
				state = "unknown" // a record whose state could not be read
			}
			ch <- prometheus.MustNewConstMetric(commandsDesc, prometheus.GaugeValue, float64(n), queue, state)
		}
	}
}

// registerMetrics registers the collectors that read the server's state at scrape time: the
// command queues and the decision index.
func (s *Server) registerMetrics() {
	s.backgroundLeader = prometheus.NewGauge(prometheus.GaugeOpts{Name: "hale_background_leader",
		Help: "1 while this server runs the cluster's background work (on PostgreSQL: holds the background lease)."})
	s.registry.MustRegister(commandStates{s}, s.index.Collector(), s.backgroundLeader)
}
