package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/halemdm/hale/agent/state"
	"github.com/halemdm/hale/api"
)

// The agent API's wire types are package api's; the agent names the ones its callers use.

// Facts describe the device at enrollment.
type Facts = api.AgentFacts

// CollectorError is one collector's failure as carried in a report.
type CollectorError = api.CollectorError

// Report is the body of POST /agent/v1/report.
type Report = api.AgentReport

// Command is one command from GET /agent/v1/commands.
type Command = api.AgentCommand

// The server's answers are api's types with the checks the agent makes before it uses one: a
// hostile or broken server must not make it write a bad path, hold too much or spin.
type (
	enrollResponse   api.AgentEnrollAnswer
	renewResponse    api.AgentRenewAnswer
	nonceResponse    api.AgentNonce
	reportResponse   api.AgentReportAnswer
	commandsResponse api.AgentCommands
	resultResponse   api.AgentResultAnswer
)

func (r *enrollResponse) validate() error {
	if !state.ValidID(r.DeviceID) {
		return fmt.Errorf("the server sent an invalid device ID %q", r.DeviceID)
	}
	if r.CertificateChain == "" {
		return errors.New("the server sent no certificate chain")
	}
	if r.ReportInterval != "" {
		if _, err := time.ParseDuration(r.ReportInterval); err != nil {
			return fmt.Errorf("the server sent an invalid report interval: %w", err)
		}
	}
	return nil
}

func (r *renewResponse) validate() error {
	if r.CertificateChain == "" {
		return errors.New("the server sent no certificate chain")
	}
	return nil
}

func (r *nonceResponse) validate() error { return validNonce(r.Nonce) }

func validNonce(n string) error {
	if n == "" || len(n) > 512 {
		return fmt.Errorf("the server sent an invalid nonce (length %d)", len(n))
	}
	return nil
}

func (r *reportResponse) validate() error {
	if !r.Accepted {
		return errors.New("the server did not accept the report")
	}
	if r.NextReportIn != "" {
		if _, err := time.ParseDuration(r.NextReportIn); err != nil {
			return fmt.Errorf("the server sent an invalid next_report_in: %w", err)
		}
	}
	if len(r.Reasons) > maxReasons {
		return fmt.Errorf("the server sent %d reasons, more than %d", len(r.Reasons), maxReasons)
	}
	for _, c := range r.Reasons {
		if c == "" || len(c) > 64 {
			return errors.New("the server sent an invalid reason code")
		}
	}
	if r.Nonce != "" {
		return validNonce(r.Nonce)
	}
	return nil
}

// maxReasons bounds the reason codes of a report's answer.
const maxReasons = 64

// Bounds on what one poll may carry: a hostile or broken server cannot make the agent hold more.
const (
	maxCommands    = 32
	maxManagedData = 256
	maxPathLen     = 4096
)

func (r *commandsResponse) validate() error {
	if len(r.Commands) > maxCommands {
		return fmt.Errorf("the server sent %d commands, more than %d", len(r.Commands), maxCommands)
	}
	for _, c := range r.Commands {
		if !state.ValidID(c.ID) {
			return fmt.Errorf("the server sent a command with an invalid ID %q", c.ID)
		}
		if len(c.ManagedData) > maxManagedData {
			return fmt.Errorf("command %s lists %d managed data paths, more than %d", c.ID, len(c.ManagedData), maxManagedData)
		}
		// Paths are checked when the wipe is planned, not here: one bad path must fail that
		// command (and be reported), not every poll.
		for _, p := range c.ManagedData {
			if len(p) > maxPathLen {
				return fmt.Errorf("command %s lists a managed data path longer than %d bytes", c.ID, maxPathLen)
			}
		}
	}
	return nil
}

func (r *resultResponse) validate() error {
	if !r.OK {
		return errors.New("the server did not acknowledge the result")
	}
	return nil
}

// validator is a decoded server answer that checks itself.
type validator interface{ validate() error }

// Response body bounds.
const (
	maxResponse = 256 << 10
)

// decodeResponse reads one JSON value of at most limit bytes into v and validates it. Unknown
// fields are allowed (a newer server may add some); anything else malformed is an error.
func decodeResponse(r io.Reader, limit int64, v validator) error {
	body, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return fmt.Errorf("reading the server's answer: %w", err)
	}
	if int64(len(body)) > limit {
		return fmt.Errorf("the server's answer is larger than %d bytes", limit)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("the server's answer is not the expected JSON: %w", err)
	}
	return v.validate()
}
