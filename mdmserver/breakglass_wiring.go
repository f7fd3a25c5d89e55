package mdmserver

import (
	"context"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/halemdm/hale/mdmserver/breakglass"
	"github.com/halemdm/hale/mdmserver/breakglassapi"
	"github.com/halemdm/hale/mdmserver/inventory"
	"github.com/halemdm/hale/mdmserver/storage"
	"github.com/halemdm/hale/policies"
)

func breakGlassStore(st storage.Store) breakglass.Store {
	return storage.Scope(st, func(tx storage.Tx) breakglass.Tx { return tx })
}

// newBreakGlass builds emergency access on the index, the inventory, the policies and the event
// transmitter, and puts the uses in force back into the index (ending those that expired while
// the server was down).
func (s *Server) newBreakGlass(o options) (*breakglass.Service, *breakglassapi.Handler, error) {
	opts := []breakglass.Option{breakglass.WithClock(s.now), breakglass.WithLogger(s.log.With("component", "break-glass")),
		breakglass.WithMetrics(newBreakGlassMetrics(s.registry))}
	if o.afterFunc != nil {
		opts = append(opts, breakglass.WithAfterFunc(o.afterFunc))
	}
	svc := breakglass.New(breakGlassStore(s.store), s.index, s.inventory, s.policyFor, s.events, opts...)
	load := svc.Load
	if s.isAccessReplica() {
		load = svc.RefreshAll // a replica writes nothing: the primaries end expired uses
	}
	if err := load(context.Background()); err != nil {
		return nil, nil, fmt.Errorf("break-glass: %w", err)
	}
	return svc, &breakglassapi.Handler{Service: svc, Devices: s.inventory, Log: s.log, Now: s.now}, nil
}

// policyFor is the policy in force for a device, nil when none.
func (s *Server) policyFor(d *inventory.Device) (*policies.Policy, error) {
	sp, err := s.policies.Effective(d)
	if err != nil || sp == nil {
		return nil, err
	}
	return sp.Policy, nil
}

// breakGlassMetrics counts emergency access for the security team's alerting.
type breakGlassMetrics struct {
	started, ended, refused *prometheus.CounterVec
}

func newBreakGlassMetrics(reg prometheus.Registerer) *breakGlassMetrics {
	m := &breakGlassMetrics{
		started: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hale_break_glass_started_total",
			Help: "Emergency access (break-glass) uses started, by channel (device: its owner; security: granted)."}, []string{"channel"}),
		ended: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hale_break_glass_ended_total",
			Help: "Emergency access uses ended, by reason (expired, revoked)."}, []string{"reason"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hale_break_glass_refused_total",
			Help: "Emergency access requests refused, by problem code."}, []string{"code"}),
	}
	reg.MustRegister(m.started, m.ended, m.refused)
	return m
}

// Started counts a use started; Ended one ended; Refused a refused request (breakglass.Metrics).
func (m *breakGlassMetrics) Started(channel string) { m.started.WithLabelValues(channel).Inc() }

// Ended counts a use that ended, by why.
func (m *breakGlassMetrics) Ended(reason string) { m.ended.WithLabelValues(reason).Inc() }

// Refused counts a refused request, by its problem code.
func (m *breakGlassMetrics) Refused(code string) { m.refused.WithLabelValues(code).Inc() }
