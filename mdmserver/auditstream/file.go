package auditstream

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"strconv"

	"github.com/halemdm/hale/mdmserver/audit"
)

// AppendLine appends r as one JSON Lines record: {"index":N,"leaf_hash":"<base64>","entry":{...}},
// the entry exactly as stored and hashed.
func AppendLine(b []byte, r audit.Record) []byte {
	b = append(b, `{"index":`...)
	b = strconv.AppendInt(b, r.Index, 10)
	b = append(b, `,"leaf_hash":"`...)
	b = append(b, r.LeafHash.String()...)
	b = append(b, `","entry":`...)
	b = append(b, bytes.TrimSpace(r.Data)...)
	return append(b, "}\n"...)
}

// FileSink appends each entry as a JSON Lines record to a file, for log shippers (Filebeat,
// Fluent Bit, Vector) that tail it. Each batch is synced before Deliver returns.
type FileSink struct {
	name string
	f    *os.File
}

// OpenFile opens (creating, mode 0600) the file at path for appending.
func OpenFile(name, path string) (*FileSink, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("auditstream: %w", err)
	}
	return &FileSink{name: name, f: f}, nil
}

// Name returns the sink's name.
func (s *FileSink) Name() string { return s.name }

// Deliver appends the records and syncs the file.
func (s *FileSink) Deliver(_ context.Context, recs []audit.Record) error {
	var b []byte
	for _, r := range recs {
		b = AppendLine(b, r)
	}
	if _, err := s.f.Write(b); err != nil {
		return err
	}
	return s.f.Sync()
}

// Close closes the file.
func (s *FileSink) Close() error { return s.f.Close() }

// WriterSink writes JSON Lines records to a writer (standard output, for a container's log
// collector). What the writer does with them after Write returns is its business.
type WriterSink struct {
	name string
	w    io.Writer
}

// NewWriterSink returns a sink writing to w.
func NewWriterSink(name string, w io.Writer) *WriterSink { return &WriterSink{name: name, w: w} }

// Name returns the sink's name.
func (s *WriterSink) Name() string { return s.name }

// Deliver writes the records.
func (s *WriterSink) Deliver(_ context.Context, recs []audit.Record) error {
	var b []byte
	for _, r := range recs {
		b = AppendLine(b, r)
	}
	_, err := s.w.Write(b)
	return err
}

// Close does nothing: the writer is not the sink's.
func (s *WriterSink) Close() error { return nil }
