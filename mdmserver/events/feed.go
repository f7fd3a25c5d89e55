package events

import "bytes"

// Several servers may serve one database. Each Transmitter wakes its own deliverers and poll
// waiters when it writes an outbox or a stream; what another server wrote reaches it through the
// database's change feed, which names the rows written (after their commit) by their store keys:
// OutboxChanged and StreamsChanged take those. Everything else a Transmitter serves (stream
// configuration, subjects, status, the outbox, the delivery state, the verification interval)
// is read from the store on each use, so it is the same on every server. What stays per
// server: the delivery counters of the metrics (each server's own), and which server runs Run.

// outboxSeqLen is the length of the sequence part of an outbox key.
const outboxSeqLen = 16

// OutboxKey is the key a backend keeps SET number seq of a stream's outbox under: the stream
// ID, a 0x00 byte, then seq as 16 bytes big endian (its last 8 bytes hold it), so a stream's
// SETs are contiguous and in emission order. It is defined here because the change feed names
// outbox rows by it and OutboxChanged reads it. Stream IDs hold no 0x00 byte.
func OutboxKey(streamID string, seq uint64) []byte {
	k := make([]byte, len(streamID)+1+outboxSeqLen)
	copy(k, streamID)
	for i := range 8 {
		k[len(k)-1-i] = byte(seq >> (8 * i))
	}
	return k
}

// OutboxStream returns the stream ID of an OutboxKey; ok is false for a key of another shape.
func OutboxStream(key []byte) (streamID string, ok bool) {
	n := len(key) - outboxSeqLen - 1
	if n <= 0 || key[n] != 0 || bytes.IndexByte(key[:n], 0) >= 0 {
		return "", false
	}
	return string(key[:n]), true
}

// OutboxChanged wakes the push deliverers and poll waiters of the streams whose outbox rows
// another server wrote: keys are OutboxKeys (the keys of kvstore.BucketEventOutbox), as the
// change feed names them. Call it on every server: the deliverers run on the one that runs
// Run, but any server may hold a receiver's long poll. Keys of another shape are ignored. It
// does not block and reads nothing: a woken deliverer or poll reads the outbox itself.
func (t *Transmitter) OutboxChanged(keys ...[]byte) {
	seen := map[string]bool{}
	for _, k := range keys {
		if id, ok := OutboxStream(k); ok && !seen[id] {
			seen[id] = true
			t.notify(id)
		}
	}
}

// StreamsChanged tells the Transmitter that another server created, changed or deleted
// streams: streamIDs are the keys of kvstore.BucketEventStreams (stream IDs) as the change feed
// names them. Run reconciles its deliverers with the stored streams (starting, restarting or
// stopping them), and the polls waiting on the named streams look at them again (a paused
// stream's poll answers at once). It does not block and reads nothing.
func (t *Transmitter) StreamsChanged(streamIDs ...string) {
	t.streamsChanged()
	for _, id := range streamIDs {
		t.notify(id)
	}
}
