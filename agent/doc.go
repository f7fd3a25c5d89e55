// Package agent is the mdmagent daemon's logic: enrollment with trust on first use of the
// server's CA, the posture reporting loop, the command long-poll (lock, selective wipe) and
// certificate renewal. It speaks the agent wire contract over mTLS with the device certificate
// and pins the server's CA; durable state lives in package agent/state, posture comes from an
// injected Collector (package agent/collect in the daemon). IssueAppToken gets desktop apps
// their key-bound tokens for the local endpoint (package agent/localapi).
//
// The agent never imports the server, the CA or nanomdm: it stays a small binary with a small
// heap.
package agent
