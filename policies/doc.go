// Package policies is Hale's policy model: it parses and validates policy documents (YAML or
// JSON), evaluates device posture against a policy, renders Apple configuration profiles from a
// policy, and derives the view of a policy that the mdmagent needs.
//
// The package is a pure library: no storage, no network, no clock of its own. Everything the
// server and the agent both speak about policy and posture lives here.
//
// A policy document looks like this (every section is optional; unknown fields are errors):
//
//	passcode:
//	  required: true
//	  min_length: 6               # 0-16
//	  require_alphanumeric: false
//	  min_complex_chars: 0        # 0-4
//	  max_inactivity_minutes: 5   # 1-60; screen lock on desktops, auto-lock on iOS (max 15)
//	  max_grace_minutes: 0        # 0-240
//	  max_failed_attempts: 10     # 2-11
//	  max_age_days: 90            # 1-730
//	  history: 5                  # 1-50
//	encryption: {required: true}
//	screenshots: {allowed: false, screen_observation_allowed: false}
//	backup: {cloud_backup_allowed: false, cloud_document_sync_allowed: false, require_encrypted_backup: true}
//	notifications:
//	  lock_screen_view_allowed: false
//	  apps:
//	    - {bundle_id: com.example.securetext, previews: never}   # never, when_unlocked, always
//	os:
//	  ios: "17.4"
//	  ipados: "17.4"
//	  macos: "14.5"
//	  windows: "10.0.22631"       # or "10.0.22631.3447" to require an update revision
//	  linux: {ubuntu: "22.04", debian: "12"}   # ubuntu: "22.04" directly under os also works
//	integrity:
//	  block_jailbroken: true
//	  jailbreak_evidence: observed  # deny devices reported jailbroken; required: also those never reported on
//	  require_sip: true
//	  require_secure_boot: true
//	  block_agent_tampering: true
//	  require_app_attestation: true  # iPhones and iPads: the messaging app attested (App Attest) and reporting
//	reporting: {max_age: 15m, interval: 5m}
//	grace: {period: 24h, no_grace_for: [encryption_off]}   # or grace: 24h
//	managed_data:
//	  macos: ["~/Library/Application Support/SecureText"]
//	  windows: ['%LOCALAPPDATA%\SecureText']
//	  linux: [/var/lib/securetext]
//
// Evaluation fails closed: a fact a rule needs that is unknown or older than the policy's
// report age makes the device noncompliant, with a reason that names the fact.
//
// So a rule that needs a fact no source reports on some platform can never be met there.
// CheckObservable finds such rules: Sources lists, as data, which facts each source Hale has
// (Apple MDM queries, the mdmagent's collectors) reports on which platforms.
package policies
