package access

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

var (
	indexDevicesDesc = prometheus.NewDesc("hale_decision_index_devices",
		"Devices in the in-memory decision index.", nil, nil)
	indexLoadedDesc = prometheus.NewDesc("hale_decision_index_loaded",
		"1 once the decision index holds every device's decision; until then every access check denies.", nil, nil)
	indexChangeAgeDesc = prometheus.NewDesc("hale_decision_index_update_age_seconds",
		"Seconds since the decision index last changed: a decision written or removed, or the full load.", nil, nil)
	indexLoadAgeDesc = prometheus.NewDesc("hale_decision_index_load_age_seconds",
		"Seconds since the decision index finished its last full load.", nil, nil)
)

// Collector returns a Prometheus collector that reads x at scrape time: how many devices it
// holds, whether it is loaded and, once it is, how long ago it last changed and how long ago it
// was loaded. Reading costs a lock for the count and two atomic loads.
func (x *Index) Collector() prometheus.Collector { return indexCollector{x} }

type indexCollector struct{ x *Index }

// Describe implements prometheus.Collector.
func (c indexCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- indexDevicesDesc
	ch <- indexLoadedDesc
	ch <- indexChangeAgeDesc
	ch <- indexLoadAgeDesc
}

// Collect implements prometheus.Collector.
func (c indexCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(indexDevicesDesc, prometheus.GaugeValue, float64(c.x.Len()))
	if !c.x.Loaded() {
		ch <- prometheus.MustNewConstMetric(indexLoadedDesc, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(indexLoadedDesc, prometheus.GaugeValue, 1)
	now := time.Now()
	ch <- prometheus.MustNewConstMetric(indexChangeAgeDesc, prometheus.GaugeValue, now.Sub(c.x.ChangedAt()).Seconds())
	ch <- prometheus.MustNewConstMetric(indexLoadAgeDesc, prometheus.GaugeValue, now.Sub(c.x.LoadedAt()).Seconds())
}
