package mdmserver

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/halemdm/hale/internal/problem"
	"github.com/halemdm/hale/mdmserver/storage"
	"github.com/halemdm/hale/mdmserver/storage/kvstore"
	"github.com/halemdm/hale/mdmserver/storage/pgstore"
)

// The roles a server takes on a shared PostgreSQL database (Config.Role).
const (
	// RolePrimary does everything: devices, agents, admin API, console. Any number of primaries
	// may serve one database; the one holding the background lease also runs the cluster's
	// background work.
	RolePrimary = "primary"
	// RoleAccess is an access replica: it answers the access API from memory kept current from
	// the change feed, and writes nothing. Any number may run beside the primaries.
	RoleAccess = "access"
)

// followedBuckets are the records a server keeps in memory: every write to them goes into the
// change feed, and every other server on the database follows it.
var followedBuckets = [][]byte{
	kvstore.BucketInventoryDevices, kvstore.BucketCompliancePosture, kvstore.BucketComplianceVerdict,
	kvstore.BucketCompliancePolicies, kvstore.BucketComplianceAssignments,
	kvstore.BucketBreakGlass, kvstore.BucketSigningKeys, kvstore.BucketTokens, pgstore.CABucket("revoked_x509_certs"),
	kvstore.BucketAgentCommands, kvstore.BucketEventOutbox, kvstore.BucketEventStreams,
}

// accessReplicaRoutes are the token routes an access replica serves: the decisions.
var accessReplicaRoutes = []string{"GET /access/v1/devices/{id}", "POST /access/v1/check"}

// isAccessReplica reports whether this server is an access replica.
func (s *Server) isAccessReplica() bool { return s.cfg.Role == RoleAccess }

// followsFeed reports whether this server shares its database with others (PostgreSQL) and so
// follows their changes.
func (s *Server) followsFeed() bool {
	_, shared := s.store.(*pgstore.Store)
	return shared
}

// checkReplicaDatabase refuses to start an access replica on a database no primary has set up
// (no API token or signing key yet): the replica would write them itself, beside the primary.
func (s *Server) checkReplicaDatabase(ctx context.Context) error {
	var tokens, keys int
	err := s.store.View(ctx, func(tx storage.Tx) error {
		var err error
		if tokens, err = tx.Tokens().Count(ctx); err != nil {
			return err
		}
		k, err := tx.Signing().Keys(ctx)
		keys = len(k)
		return err
	})
	if err != nil {
		return err
	}
	if tokens == 0 || keys == 0 {
		return errors.New("access replica: the database has not been set up by a primary yet; start the primary first")
	}
	return nil
}

// replicaRoutes is an access replica's handler: health, metrics, the signing keys and the
// access API's decisions. Everything else is the primary's, and says so.
func (s *Server) replicaRoutes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.registry, promhttp.HandlerOpts{}))
	mux.Handle("GET /access/v1/jwks.json", s.keys.Handler())
	mux.Handle("GET /ca/root.pem", s.ca.RootHandler())
	for _, rt := range s.tokenRoutes() {
		if slices.Contains(accessReplicaRoutes, rt.pattern) {
			mux.Handle(rt.pattern, s.tokens.Require(s.log, rt.handler, rt.roles...))
		}
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		problem.Error(w, r, http.StatusMisdirectedRequest, "access-replica",
			"this server is an access replica: it answers "+strings.Join(accessReplicaRoutes, " and ")+
				"; send everything else to the primary")
	})
	return mux
}

// followChanges keeps this server's memory current with what the other servers write, from
// the change feed, until ctx ends, from the position read before memory was loaded. Each
// catch-up extends how long the index may answer (Config.ReplicaStaleAfter): a server that
// cannot follow denies rather than answer from what it knew.
func (s *Server) followChanges(ctx context.Context) {
	pg := s.store.(*pgstore.Store)
	_ = pg.Follow(ctx, s.feedFrom, pgstore.Follower{
		Apply: func(ctx context.Context, changes []pgstore.Change) error {
			// Its own changes this server applied as it made them. (A copy: the feed's position
			// is read from changes after Apply.)
			others := make([]pgstore.Change, 0, len(changes))
			for _, c := range changes {
				if c.Origin != pg.Origin() {
					others = append(others, c)
				}
			}
			return s.applyChanges(ctx, others)
		},
		Resync: s.reloadAll,
		CaughtUp: func(at time.Time) {
			s.index.SetFreshUntil(at.Add(s.cfg.ReplicaStaleAfter))
		},
		Poll: time.Second,
	})
}

// applyChanges brings what a batch of other servers' changes touched up to date from the
// store, silently: the server that made a change told the hooks (security events, warnings).
func (s *Server) applyChanges(ctx context.Context, changes []pgstore.Change) error {
	devices := map[string]bool{}
	uses := map[string]bool{}
	var apiTokens, streams []string
	var agentCommands, outbox [][]byte
	var policies, keys, revocations bool
	for _, c := range changes {
		switch c.Bucket {
		case string(kvstore.BucketInventoryDevices), string(kvstore.BucketCompliancePosture), string(kvstore.BucketComplianceVerdict):
			devices[string(c.Key)] = true
		case string(kvstore.BucketCompliancePolicies), string(kvstore.BucketComplianceAssignments):
			policies = true
		case string(kvstore.BucketBreakGlass):
			uses[string(c.Key)] = true
		case string(kvstore.BucketSigningKeys):
			keys = true
		case string(kvstore.BucketTokens):
			apiTokens = append(apiTokens, string(c.Key))
		case string(pgstore.CABucket("revoked_x509_certs")):
			revocations = true
		case string(kvstore.BucketAgentCommands):
			agentCommands = append(agentCommands, c.Key)
		case string(kvstore.BucketEventOutbox):
			outbox = append(outbox, c.Key)
		case string(kvstore.BucketEventStreams):
			streams = append(streams, string(c.Key))
		}
	}
	// Policies first: the devices' decisions below take their report max age from them.
	if policies {
		if err := s.compliance.PoliciesChanged(ctx); err != nil {
			return fmt.Errorf("feed: policies: %w", err)
		}
	}
	if len(devices) > 0 {
		ids := slices.Collect(maps.Keys(devices))
		if err := s.compliance.Refresh(ctx, ids...); err != nil {
			return fmt.Errorf("feed: devices: %w", err)
		}
		if s.graceWarn != nil {
			s.graceWarn.Refreshed(ctx, ids)
		}
	}
	for id := range uses {
		if err := s.breakGlass.Refresh(ctx, id); err != nil {
			return fmt.Errorf("feed: break-glass use %s: %w", id, err)
		}
	}
	if keys {
		if err := s.keys.Reload(ctx); err != nil {
			return fmt.Errorf("feed: signing keys: %w", err)
		}
	}
	if len(apiTokens) > 0 {
		if err := s.tokens.RefreshTokens(ctx, apiTokens...); err != nil {
			return fmt.Errorf("feed: API tokens: %w", err)
		}
	}
	if revocations {
		if err := s.ca.RefreshRevocations(ctx); err != nil {
			return fmt.Errorf("feed: revocations: %w", err)
		}
	}
	return s.wakeForChanges(ctx, agentCommands, outbox, streams)
}

// reloadAll reloads everything a server keeps from the store, when the feed was pruned past it.
func (s *Server) reloadAll(ctx context.Context) error {
	if err := s.compliance.PoliciesChanged(ctx); err != nil {
		return err
	}
	if err := s.compliance.Load(ctx); err != nil {
		return err
	}
	if s.graceWarn != nil {
		s.graceWarn.Refreshed(ctx, s.index.DeviceIDs())
	}
	if err := s.breakGlass.RefreshAll(ctx); err != nil {
		return err
	}
	if err := s.keys.Reload(ctx); err != nil {
		return err
	}
	if err := s.tokens.RefreshTokens(ctx); err != nil {
		return err
	}
	return s.ca.RefreshRevocations(ctx)
}

// changeRetention is how long the change feed keeps a change: a replica away longer reloads.
const changeRetention = time.Hour

// pruneChanges trims the change feed every few minutes (the background lease's holder).
func (s *Server) pruneChanges(ctx context.Context) {
	pg, ok := s.store.(*pgstore.Store)
	if !ok {
		return
	}
	t := time.NewTicker(5 * time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if n, err := pg.PruneChanges(ctx, changeRetention); err != nil {
			s.log.Warn("change feed: prune failed", "err", err)
		} else if n > 0 {
			s.log.Debug("change feed: pruned", "changes", n)
		}
	}
}

// wakeForChanges wakes what waits on this server for records other servers wrote: agents'
// long polls for their commands, and (on the background lease's holder) the delivery of
// security events and the streams it delivers to.
func (s *Server) wakeForChanges(ctx context.Context, agentCommands, outbox [][]byte, streams []string) error {
	if len(outbox) > 0 {
		s.events.OutboxChanged(outbox...)
	}
	if len(streams) > 0 {
		s.events.StreamsChanged(streams...)
	}
	if len(agentCommands) > 0 {
		if err := s.agentQueue.WakeKeys(ctx, agentCommands...); err != nil {
			return fmt.Errorf("feed: agent commands: %w", err)
		}
	}
	return nil
}
