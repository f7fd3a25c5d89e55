package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/halemdm/hale/agent/state"
	"github.com/halemdm/hale/internal/rootpin"
)

// EnrollFile is what an installer leaves for the agent's first start: the server, a reusable
// enrollment credential and the SHA-256 fingerprint of the server's root CA, which is pinned
// (the installer's builder vouched for it). It is JSON, at most MaxEnrollFile bytes.
type EnrollFile struct {
	ServerURL     string `json:"server_url"`
	Token         string `json:"token"`
	CAFingerprint string `json:"ca_fingerprint"`
}

// MaxEnrollFile bounds an enrollment file.
const MaxEnrollFile = 16 << 10

// ReadEnrollFile reads and validates an enrollment file: all three fields are required, the
// fingerprint must be a SHA-256 and unknown fields are refused.
func ReadEnrollFile(path string) (*EnrollFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxEnrollFile+1))
	if err != nil {
		return nil, err
	}
	return ParseEnrollFile(data)
}

// ParseEnrollFile decodes and validates the bytes of an enrollment file (see ReadEnrollFile).
func ParseEnrollFile(data []byte) (*EnrollFile, error) {
	if len(data) > MaxEnrollFile {
		return nil, fmt.Errorf("enrollment file larger than %d bytes", MaxEnrollFile)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var ef EnrollFile
	if err := dec.Decode(&ef); err != nil {
		return nil, fmt.Errorf("enrollment file: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("enrollment file: data after the JSON object")
	}
	if ef.ServerURL == "" || ef.Token == "" || ef.CAFingerprint == "" {
		return nil, errors.New("enrollment file: server_url, token and ca_fingerprint are required")
	}
	if _, _, err := normalizeServerURL(ef.ServerURL); err != nil {
		return nil, fmt.Errorf("enrollment file: %w", err)
	}
	if _, err := rootpin.ParseFingerprint(ef.CAFingerprint); err != nil {
		return nil, fmt.Errorf("enrollment file: %w", err)
	}
	return &ef, nil
}

// EnrollFromFile enrolls the device with the enrollment file at path unless store already holds
// an enrollment (an upgrade or a restart keeps the device's identity). A server that cannot be
// reached or refuses is retried, backing off from first to at most max, until ctx ends: an
// installer may run before the network is up. facts is called before each try.
func EnrollFromFile(ctx context.Context, store *state.Store, path string, facts func(context.Context) Facts, log *slog.Logger, first, max time.Duration) error {
	if store.Enrolled() {
		return nil
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ef, err := ReadEnrollFile(path)
	if err != nil {
		return err
	}
	wait := first
	for {
		id, err := Enroll(ctx, store, EnrollConfig{ServerURL: ef.ServerURL, Token: ef.Token, CAFingerprint: ef.CAFingerprint,
			Facts: facts(ctx), Logger: log})
		if err == nil {
			log.Info("enrolled with the installer's credential", "device_id", id.DeviceID, "server", id.ServerURL)
			return nil
		}
		log.Warn("enrolling with the installer's credential failed; retrying", "err", err, "retry_in", wait)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		wait = min(2*wait, max)
	}
}
