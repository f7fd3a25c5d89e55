package android

import "github.com/prometheus/client_golang/prometheus"

// Push outcomes, the label of hale_android_pushes_total.
const (
	outcomeProcessed       = "processed"
	outcomeDuplicate       = "duplicate"
	outcomeUnauthenticated = "unauthenticated"
	outcomeMalformed       = "malformed"
	outcomeRefused         = "refused"
	outcomeError           = "error"
)

// WithMetrics counts pushes by outcome in hale_android_pushes_total, registered with reg: a
// rise in unauthenticated or refused pushes is someone knocking, one in errors a store that
// fails (Pub/Sub redelivers those).
func WithMetrics(reg prometheus.Registerer) Option {
	return func(s *Service) {
		s.pushes = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hale_android_pushes_total",
			Help: "Android Management API Pub/Sub pushes received, by outcome."}, []string{"outcome"})
		for _, o := range []string{outcomeProcessed, outcomeDuplicate, outcomeUnauthenticated, outcomeMalformed, outcomeRefused, outcomeError} {
			s.pushes.WithLabelValues(o)
		}
		reg.MustRegister(s.pushes)
	}
}

// count records a push's outcome when metrics are on.
func (s *Service) count(outcome string) {
	if s.pushes != nil {
		s.pushes.WithLabelValues(outcome).Inc()
	}
}
