package kvstore

import (
	"encoding/json"
	"slices"
)

// Buckets are the buckets of Hale's own repositories, every one a backend must have before
// [NewTx] runs on it (bbolt creates them at open, PostgreSQL in its schema). Each repository file
// names its buckets in a var and lists it here. The names are the on-disk layout of existing
// data directories: never rename one.
var Buckets = slices.Concat(
	signingBuckets,
	eventBuckets,
	complianceBuckets,
	auditBuckets,
	approvalsBuckets,
	tokensBuckets,
	enrollBuckets,
	inventoryBuckets,
	idempotencyBuckets,
	commandsBuckets,
	agentCommandsBuckets,
	pushCertsBuckets,
	appInstancesBuckets,
	androidBuckets,
	breakGlassBuckets,
	consoleSessionBuckets,
)

// CountedBuckets are the buckets whose records have a state that [Tx.MoveState] and
// [Tx.StateCounts] count: the Apple MDM command records and the agent commands. A backend that
// keeps the counts beside the data counts each of them once at open with [CountStates].
var CountedBuckets = [][]byte{BucketCommandRecords, BucketAgentCommands}

// StateOf returns the "state" of a record of a counted bucket (a JSON object) without decoding
// the rest of it; an undecodable record has state "".
func StateOf(v []byte) string {
	var r struct {
		State string `json:"state"`
	}
	_ = json.Unmarshal(v, &r)
	return r.State
}

// CountStates counts the records of bucket per state by reading every one of them: what a
// backend that keeps the counts in memory does once at open, before anything else can write.
func CountStates(kv Tx, bucket []byte) (map[string]int64, error) {
	b, err := kv.Bucket(bucket)
	if err != nil {
		return nil, err
	}
	n := map[string]int64{}
	err = b.ForEach(func(_, v []byte) error {
		n[StateOf(v)]++
		return nil
	})
	return n, err
}

// AppendOnlyBuckets are the buckets whose keys only ever grow (each Put is after the last key):
// the audit log's entries and tree hashes, and the compliance history. A backend whose storage
// can pack such keys tighter may (bbolt fills their pages full: the file stays about half the
// size); it changes nothing a repository sees.
var AppendOnlyBuckets = [][]byte{BucketAuditEntries, BucketAuditHashes, BucketComplianceHistory}
