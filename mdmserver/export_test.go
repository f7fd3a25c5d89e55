package mdmserver

// The tests of this package are in package mdmserver_test, so that they can start their
// servers with internal/servertest (which imports mdmserver) like every other test. What they
// check below the HTTP API (a step no route takes, a state no answer shows) goes through these
// accessors, which exist only while testing. A test that can make its point through the API
// does so instead.

import (
	"net/http"

	"github.com/micromdm/nanomdm/storage"

	"github.com/halemdm/hale/certs"
	"github.com/halemdm/hale/mdmserver/agentcmd"
	"github.com/halemdm/hale/mdmserver/android"
	"github.com/halemdm/hale/mdmserver/applemdm"
	"github.com/halemdm/hale/mdmserver/commands"
	"github.com/halemdm/hale/mdmserver/compliance"
	"github.com/halemdm/hale/mdmserver/httpapi"
	"github.com/halemdm/hale/mdmserver/inventory"
	"github.com/halemdm/hale/mdmserver/tokens"
)

// InventoryForTest is the device inventory: records the API answers for only in part.
func (s *Server) InventoryForTest() *inventory.Service { return s.inventory }

// CommandsForTest is Hale's record of Apple commands, listed without the API's filtering.
func (s *Server) CommandsForTest() *commands.Service { return s.commands }

// DispatcherForTest sends and expires Apple commands; tests expire them without waiting an hour.
func (s *Server) DispatcherForTest() *commands.Dispatcher { return s.dispatch }

// MDMStoreForTest is nanomdm's storage: certificate associations and the queue as the device
// sees it.
func (s *Server) MDMStoreForTest() storage.AllStorage { return s.mdmStore }

// TokensForTest is the API token service, for tokens no API request can make (expired, made
// in the past).
func (s *Server) TokensForTest() *tokens.Service { return s.tokens }

// CAForTest is the certificate authority.
func (s *Server) CAForTest() *certs.Authority { return s.ca }

// EnrollGateForTest tallies refused anonymous enrollments; tests close its windows at will.
func (s *Server) EnrollGateForTest() *httpapi.EnrollGate { return s.enrollGate }

// ComplianceForTest is the compliance engine, whose stored posture is read before any answer.
func (s *Server) ComplianceForTest() *compliance.Engine { return s.compliance }

// AgentQueueForTest is the agent command queue, to record a result as a crash would leave it.
func (s *Server) AgentQueueForTest() *agentcmd.Queue { return s.agentQueue }

// AppleForTest is Apple MDM, whose posture refresh a test runs at its own moment.
func (s *Server) AppleForTest() *applemdm.Service { return s.apple }

// AuditKeyForTest is the audit log's note verifier key.
func (s *Server) AuditKeyForTest() string { return s.auditKey }

// RoutesForTest is the route table without its middleware.
func (s *Server) RoutesForTest() http.Handler { return s.routes() }

// TokenRouteForTest is a token-authenticated route: its mux pattern and the roles it allows
// besides admin.
type TokenRouteForTest struct {
	Pattern string
	Roles   []tokens.Role
}

// TokenRoutesForTest lists the token-authenticated routes, as routes registers them.
func (s *Server) TokenRoutesForTest() []TokenRouteForTest {
	var out []TokenRouteForTest
	for _, rt := range s.tokenRoutes() {
		out = append(out, TokenRouteForTest{Pattern: rt.pattern, Roles: rt.roles})
	}
	return out
}

// AndroidForTest is the Android management, whose reconcile loop runs hourly.
func (s *Server) AndroidForTest() *android.Service { return s.android }
