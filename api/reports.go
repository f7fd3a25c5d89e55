package api

import "time"

// CoverageReport is GET /api/v1/reports/coverage: how much of the enrolled fleet (active,
// locked and lost devices) meets each safeguard, per platform and group, and why devices are
// denied. Each count is of devices whose latest report shows the safeguard; a device that never
// said counts as not covered.
type CoverageReport struct {
	GeneratedAt time.Time     `json:"generated_at"`
	Rows        []CoverageRow `json:"rows"`
	// Total sums the rows.
	Total CoverageRow `json:"total"`
	// TopDenialReasons are the reason codes of the denied devices, most frequent first.
	TopDenialReasons []ReasonCount `json:"top_denial_reasons"`
}

// CoverageRow counts the devices of one platform (the OS: ios, ipados, macos, windows, linux,
// android; or the enrollment platform while the OS is unknown) and group.
type CoverageRow struct {
	Platform string `json:"platform"`
	Group    string `json:"group"`
	Devices  int    `json:"devices"`
	// Encrypted: disk encryption reported on.
	Encrypted int `json:"encrypted"`
	// Passcode: a passcode (phones) or screen lock (computers) reported on.
	Passcode int `json:"passcode"`
	// OSCurrent: the OS is reported and meets the policy (version, security patch).
	OSCurrent int `json:"os_current"`
	// NotJailbroken: reported not jailbroken or rooted, by a source that can tell.
	NotJailbroken int `json:"not_jailbroken"`
	// InGrace: noncompliant but still allowed until its grace period ends.
	InGrace int `json:"in_grace"`
	// Stale: no report, or one older than the policy's reporting.max_age.
	Stale int `json:"stale"`
	// Denied: the access API would refuse it a session now (noncompliant past grace, locked,
	// lost, or not evaluated).
	Denied int `json:"denied"`
}

// ReasonCount is how many denied devices give a reason code.
type ReasonCount struct {
	Code    string `json:"code"`
	Devices int    `json:"devices"`
}

// EvidenceFile is one file of an evidence pack.
type EvidenceFile struct {
	// Name is the file's path in the pack, slash-separated.
	Name   string `json:"name"`
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
}

// EvidenceManifestRequest is the body of POST /api/v1/evidence/manifest.
type EvidenceManifestRequest struct {
	Files []EvidenceFile `json:"files"`
}

// EvidenceManifest is the answer: the manifest as a note signed with the audit log's key
// ("hale evidence manifest", the time, then "<sha256> <size> <name>" per file), and the key the
// server says verifies it (verify with the audit.pub you keep).
type EvidenceManifest struct {
	Manifest    string `json:"manifest"`
	VerifierKey string `json:"verifier_key"`
}
