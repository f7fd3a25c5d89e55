package tokens

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"time"
)

// Service keeps the API tokens: each step is a unit of work of its own on a Store, on its
// clock; [Service.Require] guards HTTP routes with it. It is safe for concurrent use.
type Service struct {
	st          Store
	now         func() time.Time
	log         *slog.Logger
	onForbidden func(*http.Request, *Token)
	// mirror, when set (WithMirror), is what Authenticate reads instead of the store.
	mirror *Mirror
}

// Option configures a Service.
type Option func(*Service)

// WithClock sets the clock used for creation, expiry and revocation (tests).
func WithClock(now func() time.Time) Option { return func(s *Service) { s.now = now } }

// WithOnForbidden sets a function Require calls when a valid token is refused for its role, before
// answering 403: the server puts those refusals on the audit record, since a token probing for
// what it may do is worth a security engineer's look. (Unknown tokens are only logged: anyone
// can send one, and each audit entry costs a disk sync.)
func WithOnForbidden(fn func(r *http.Request, t *Token)) Option {
	return func(s *Service) { s.onForbidden = fn }
}

// WithLogger sets where the service reports the migration it runs at start.
func WithLogger(log *slog.Logger) Option { return func(s *Service) { s.log = log } }

// New returns the token service on st, after giving every token stored before tokens had
// people a person ([MigratePeople]), in one unit of work.
func New(ctx context.Context, st Store, opts ...Option) (*Service, error) {
	s := &Service{st: st, now: time.Now, log: slog.New(slog.DiscardHandler)}
	for _, o := range opts {
		o(s)
	}
	var migrated int
	err := st.Update(ctx, func(tx Tx) error {
		var err error
		migrated, err = MigratePeople(ctx, tx.Tokens())
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("tokens: open: %w", err)
	}
	if err := s.RefreshTokens(ctx); err != nil {
		return nil, fmt.Errorf("tokens: load the mirror: %w", err)
	}
	if migrated > 0 {
		s.log.Warn("tokens: gave each token stored without a person a person named after the token; "+
			"tokens that share a name now belong to one person", "tokens", migrated)
	}
	return s, nil
}

// Now reads the service's clock, for a step that runs this package's rules in a unit of work of
// its own.
func (s *Service) Now() time.Time { return s.now() }

// Create makes a token and returns its record and the secret token string, which is never
// available again. The record is committed before Create returns.
func (s *Service) Create(ctx context.Context, req NewRequest) (t *Token, secret string, err error) {
	err = s.st.Update(ctx, func(tx Tx) error {
		t, secret, err = Create(ctx, tx.Tokens(), req, s.now())
		return err
	})
	if err != nil {
		return nil, "", err
	}
	s.mirrored(t)
	return t, secret, nil
}

// Authenticate returns the active token for a presented token string. It runs on every API
// request: one short read, and none at all for a string that is not a token.
func (s *Service) Authenticate(ctx context.Context, presented string) (t *Token, err error) {
	if _, _, ok := parse(presented); !ok {
		return nil, ErrMalformed
	}
	if s.mirror != nil {
		return Authenticate(ctx, s.mirror, presented, s.now())
	}
	err = s.st.View(ctx, func(tx Tx) error {
		t, err = Authenticate(ctx, tx.Tokens(), presented, s.now())
		return err
	})
	return t, err
}

// Get returns the token record with id.
func (s *Service) Get(ctx context.Context, id string) (t *Token, err error) {
	err = s.st.View(ctx, func(tx Tx) error {
		t, err = tx.Tokens().Get(ctx, id)
		return err
	})
	return t, err
}

// List returns every token record, oldest first.
func (s *Service) List(ctx context.Context) (list []*Token, err error) {
	err = s.st.View(ctx, func(tx Tx) error {
		list, err = tx.Tokens().List(ctx)
		return err
	})
	slices.SortFunc(list, func(a, b *Token) int { return a.CreatedAt.Compare(b.CreatedAt) })
	return list, err
}

// Revoke marks the token revoked. Revoking twice keeps the first time.
func (s *Service) Revoke(ctx context.Context, id string) (t *Token, err error) {
	err = s.st.Update(ctx, func(tx Tx) error {
		t, err = Revoke(ctx, tx.Tokens(), id, s.now())
		return err
	})
	if err == nil {
		s.mirrored(t)
	}
	return t, err
}

// mirrored puts a token this service just committed into its mirror, if it keeps one.
func (s *Service) mirrored(t *Token) {
	if s.mirror != nil {
		s.mirror.set(t)
	}
}

// Count returns how many tokens exist (used to decide whether to bootstrap an admin token).
func (s *Service) Count(ctx context.Context) (n int, err error) {
	err = s.st.View(ctx, func(tx Tx) error {
		n, err = tx.Tokens().Count(ctx)
		return err
	})
	return n, err
}

// Creators returns the people whose tokens created t, nearest first ([Creators]).
func (s *Service) Creators(ctx context.Context, t *Token) (people []string, err error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	err = s.st.View(ctx, func(tx Tx) error {
		people, err = Creators(ctx, tx.Tokens(), t)
		return err
	})
	return people, err
}
