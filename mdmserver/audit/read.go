package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/tlog"
)

// List limits. A page scans at most maxScan entries so that a filter matching nothing cannot
// make one request walk the whole log; the caller continues from next.
const (
	DefaultListLimit = 100
	MaxListLimit     = 1000
	maxScan          = 10000
	batchSize        = 512 // entries read per short read transaction
)

// Filter selects entries. Empty fields match everything.
type Filter struct {
	Actor string `json:"actor,omitempty"`
	// Action matches exactly, or as a prefix when it ends in "*" ("device.*").
	Action string `json:"action,omitempty"`
	Target string `json:"target,omitempty"`
	// Since is inclusive, Until exclusive.
	Since time.Time `json:"since,omitzero"`
	Until time.Time `json:"until,omitzero"`
}

// Match reports whether e passes f.
func (f Filter) Match(e *Entry) bool {
	if f.Actor != "" && e.Actor != f.Actor {
		return false
	}
	if prefix, ok := strings.CutSuffix(f.Action, "*"); ok {
		if !strings.HasPrefix(e.Action, prefix) {
			return false
		}
	} else if f.Action != "" && e.Action != f.Action {
		return false
	}
	if f.Target != "" && e.Target != f.Target {
		return false
	}
	if !f.Since.IsZero() && e.Time.Before(f.Since) {
		return false
	}
	if !f.Until.IsZero() && !e.Time.Before(f.Until) {
		return false
	}
	return true
}

func (f Filter) isZero() bool {
	return f.Actor == "" && f.Action == "" && f.Target == "" && f.Since.IsZero() && f.Until.IsZero()
}

// Get returns entry index, or ErrNotFound.
func (l *Log) Get(ctx context.Context, index int64) (Entry, error) {
	if err := ctx.Err(); err != nil {
		return Entry{}, err
	}
	if index < 0 {
		return Entry{}, ErrNotFound
	}
	var e Entry
	err := l.st.View(ctx, func(tx Tx) error {
		v, err := tx.Audit().Entry(ctx, index)
		if err != nil {
			return err
		}
		e, err = decodeStored(index, v)
		return err
	})
	return e, err
}

// List returns up to limit entries matching f, in index order, starting at index start (0 for
// the beginning). limit <= 0 means DefaultListLimit and is capped at MaxListLimit. next is the
// start of the following page, or 0 when there are no more entries. A page may hold fewer than
// limit entries (even none) while next is not 0: one call examines a bounded number of entries.
func (l *Log) List(ctx context.Context, f Filter, start int64, limit int) ([]Entry, int64, error) {
	if limit <= 0 {
		limit = DefaultListLimit
	}
	limit = min(limit, MaxListLimit)
	start = max(start, 0)
	size, err := l.Size(ctx)
	if err != nil {
		return nil, 0, err
	}
	var out []Entry
	scanned := 0
	for start < size && len(out) < limit && scanned < l.maxScan {
		raws, err := l.readRaw(ctx, start, min(size, start+batchSize))
		if err != nil {
			return nil, 0, err
		}
		for _, r := range raws {
			start = r.index + 1
			scanned++
			e, err := decodeStored(r.index, r.data)
			if err != nil {
				return nil, 0, err
			}
			if f.Match(&e) {
				out = append(out, e)
			}
			if len(out) == limit || scanned == l.maxScan {
				break
			}
		}
	}
	if start >= size {
		start = 0
	}
	return out, start, nil
}

// Export writes the entries matching f to w as JSON Lines: each entry's stored bytes followed by
// "\n", in index order, up to the size the log had when Export began. Only an export with an
// empty Filter can be verified (VerifyExport needs every index).
func (l *Log) Export(ctx context.Context, w io.Writer, f Filter) error {
	size, err := l.Size(ctx)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	// Read in short transactions and write outside them: a slow reader must not hold a read
	// transaction open (bbolt's would stall the writer whenever the file grows).
	for start := int64(0); start < size; {
		raws, err := l.readRaw(ctx, start, min(size, start+batchSize))
		if err != nil {
			return err
		}
		buf.Reset()
		for _, r := range raws {
			start = r.index + 1
			if !f.isZero() {
				e, err := decodeStored(r.index, r.data)
				if err != nil {
					return err
				}
				if !f.Match(&e) {
					continue
				}
			}
			buf.Write(r.data)
			buf.WriteByte('\n')
		}
		if _, err := w.Write(buf.Bytes()); err != nil {
			return fmt.Errorf("audit: writing export: %w", err)
		}
	}
	return nil
}

type rawEntry struct {
	index int64
	data  []byte
}

// readRaw copies entries [from, to) out of one read transaction. Every index below the size must
// be present; a gap means the database was tampered with.
func (l *Log) readRaw(ctx context.Context, from, to int64) ([]rawEntry, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	out := make([]rawEntry, 0, to-from)
	err := l.st.View(ctx, func(tx Tx) error {
		r := tx.Audit()
		for i := from; i < to; i++ {
			v, err := r.Entry(ctx, i)
			if errors.Is(err, ErrNotFound) {
				return &VerifyError{Index: i, Kind: KindMissing, Detail: "entry is missing from the database"}
			} else if err != nil {
				return err
			}
			out = append(out, rawEntry{i, v})
		}
		return nil
	})
	return out, err
}

// decodeStored parses stored entry bytes, checking they belong at index.
func decodeStored(index int64, data []byte) (Entry, error) {
	e, err := decodeEntry(data)
	if err != nil {
		return Entry{}, &VerifyError{Index: index, Kind: KindMalformed, Detail: err.Error()}
	}
	if e.Index != index {
		return Entry{}, &VerifyError{Index: index, Kind: KindChanged, Detail: fmt.Sprintf("stored entry says index %d", e.Index)}
	}
	return e, nil
}

// decodeEntry strictly parses one entry's bytes: one JSON object, known fields only.
func decodeEntry(data []byte) (Entry, error) {
	var e Entry
	// Decode would accept "null" as an empty entry; an entry is always an object.
	if t := bytes.TrimLeft(data, " \t\r\n"); len(t) == 0 || t[0] != '{' {
		return Entry{}, errors.New("malformed JSON: not an object")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		return Entry{}, fmt.Errorf("malformed JSON: %v", err)
	}
	if dec.More() {
		return Entry{}, fmt.Errorf("malformed JSON: data after the entry object")
	}
	if _, err := dec.Token(); err != io.EOF {
		return Entry{}, fmt.Errorf("malformed JSON: data after the entry object")
	}
	return e, nil
}

// Record is one stored entry as it is delivered to a sink: its index, its exact stored bytes
// and their leaf hash, so a copy kept elsewhere can be checked against a signed checkpoint.
type Record struct {
	Index    int64
	Data     []byte
	LeafHash tlog.Hash
}

// Records returns up to limit stored entries from index from on, in order (fewer at the end of
// the log).
func (l *Log) Records(ctx context.Context, from int64, limit int) ([]Record, error) {
	size, err := l.Size(ctx)
	if err != nil {
		return nil, err
	}
	to := min(size, from+int64(limit))
	if from < 0 || from >= to {
		return nil, nil
	}
	raw, err := l.readRaw(ctx, from, to)
	if err != nil {
		return nil, err
	}
	out := make([]Record, len(raw))
	for i, r := range raw {
		out[i] = Record{Index: r.index, Data: r.data, LeafHash: tlog.RecordHash(r.data)}
	}
	return out, nil
}

// Delivered returns the named sink's delivery cursor: the index of the first entry it has not
// been sent.
func (l *Log) Delivered(ctx context.Context, sink string) (int64, error) {
	var n int64
	err := l.st.View(ctx, func(tx Tx) error {
		var err error
		n, err = tx.Audit().Delivered(ctx, sink)
		return err
	})
	return n, err
}

// SetDelivered moves the named sink's delivery cursor to next, durably.
func (l *Log) SetDelivered(ctx context.Context, sink string, next int64) error {
	return l.st.Update(ctx, func(tx Tx) error { return tx.Audit().PutDelivered(ctx, sink, next) })
}
