package boltstore

import "slices"

// buckets are the top-level bbolt buckets of Hale's own repositories, created at Open. Each
// repository file names its buckets in a var and lists it here.
var buckets = slices.Concat(
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
