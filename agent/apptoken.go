package agent

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"github.com/halemdm/hale/agent/localapi"
	"github.com/halemdm/hale/agent/localproto"
	"github.com/halemdm/hale/api"
	"github.com/halemdm/hale/internal/problem"
)

// appTokenResponse is api.PostureToken with the checks the agent makes before passing it on.
type appTokenResponse api.PostureToken

func (r *appTokenResponse) validate() error {
	if r.Token == "" || strings.Count(r.Token, ".") != 2 || r.ExpiresAt.IsZero() {
		return errors.New("the server's app token answer has no token or expiry")
	}
	return nil
}

// IssueAppToken asks the server, over the device's mutual TLS identity, for a posture token
// bound to a desktop app's key (POST /agent/v1/app-token): the local endpoint's Issuer. The
// server's refusal of the device (403: wiped, locked, non-compliant, ...) comes back as a
// *localproto.Error device_denied with its reason codes; a failure to reach the server, or an
// answer that is not one, is an ordinary error, which the endpoint reports as
// server_unreachable. No token is ever cached: each is the server's decision of the moment.
func (a *Agent) IssueAppToken(ctx context.Context, req localapi.TokenRequest) (localapi.Token, error) {
	key, err := json.Marshal(req.Key)
	if err != nil {
		return localapi.Token{}, err
	}
	body := api.AgentAppTokenRequest{Key: key, User: req.Peer.User, UID: req.Peer.UID, Executable: req.Peer.Executable}
	var out appTokenResponse
	if err := a.client.do(ctx, a.requestTimeout, http.MethodPost, "/agent/v1/app-token", body, &out); err != nil {
		var p *problem.Details
		if errors.As(err, &p) && p.Status >= 400 && p.Status < 500 {
			e := &localproto.Error{Code: localproto.CodeDeviceDenied, Detail: "the Hale server refused: " + p.Detail, Reasons: reasonCodes(p)}
			if p.Status != http.StatusForbidden {
				e.Code = localproto.CodeInternal
			}
			return localapi.Token{}, e
		}
		return localapi.Token{}, err
	}
	return localapi.Token{Token: out.Token, TokenType: out.TokenType, ExpiresAt: out.ExpiresAt, DeviceID: a.id.DeviceID}, nil
}

// reasonCodes are a problem's access reason codes ([{code, detail}]), or its own code when it
// has none (the device API's refusals: device-wiped, certificate-refused).
func reasonCodes(p *problem.Details) []string {
	var out []string
	if rs, ok := p.Reasons.([]any); ok {
		for _, r := range rs {
			if m, ok := r.(map[string]any); ok {
				if c, ok := m["code"].(string); ok && len(c) <= 64 {
					out = append(out, c)
				}
			}
			if len(out) == 16 {
				break
			}
		}
	}
	if len(out) == 0 && p.Code != "" {
		out = []string{p.Code}
	}
	return out
}
