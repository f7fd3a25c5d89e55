package storagetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/halemdm/hale/mdmserver/audit"
	"github.com/halemdm/hale/mdmserver/audit/audittest"
	"github.com/halemdm/hale/mdmserver/storage"
)

// The audit log's reads, checkpoints and proofs, concurrency and Run, over the repository of
// the backend under test.

func auditAppendGetListExport(t *testing.T, open Opener) {
	ctx := context.Background()
	st := Fresh(t, open)
	l, _ := auditLog(t, st)
	audittest.AppendN(t, l, 0, 20)

	e, err := l.Get(ctx, 7)
	if err != nil {
		t.Fatal(err)
	}
	want := audittest.Entry(7)
	if e.Index != 7 || e.Actor != want.Actor || e.Action != want.Action || e.Details["command_id"] != "cmd-7" {
		t.Fatalf("Get(7) = %+v", e)
	}
	if e.Time.Location() != time.UTC || e.Time.IsZero() {
		t.Fatalf("time %v not set in UTC", e.Time)
	}
	if _, err := l.Get(ctx, 20); !errors.Is(err, audit.ErrNotFound) {
		t.Fatalf("Get(20) error = %v, want audit.ErrNotFound", err)
	}
	if _, err := l.Get(ctx, -1); !errors.Is(err, audit.ErrNotFound) {
		t.Fatalf("Get(-1) error = %v, want audit.ErrNotFound", err)
	}

	// Paging through everything.
	var all []audit.Entry
	for start := int64(0); ; {
		page, next, err := l.List(ctx, audit.Filter{}, start, 6)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, page...)
		if next == 0 {
			break
		}
		start = next
	}
	if len(all) != 20 {
		t.Fatalf("paged %d entries, want 20", len(all))
	}
	for i, e := range all {
		if e.Index != int64(i) {
			t.Fatalf("entry %d has index %d", i, e.Index)
		}
	}

	filters := []struct {
		name string
		f    audit.Filter
		want []int64
	}{
		{"actor", audit.Filter{Actor: "tok_1"}, []int64{1, 4, 7, 10, 13, 16, 19}},
		{"action", audit.Filter{Action: "device.wipe"}, []int64{1, 5, 9, 13, 17}},
		{"action prefix", audit.Filter{Action: "device.*", Target: "dev-0"}, []int64{0, 5}},
		{"target", audit.Filter{Target: "dev-3"}, []int64{3, 8, 13, 18}},
		{"since until", audit.Filter{Since: all[4].Time, Until: all[7].Time}, []int64{4, 5, 6}},
		{"nothing", audit.Filter{Actor: "nobody"}, nil},
	}
	for _, tc := range filters {
		t.Run(tc.name, func(t *testing.T) {
			page, next, err := l.List(ctx, tc.f, 0, 0)
			if err != nil {
				t.Fatal(err)
			}
			if next != 0 {
				t.Fatalf("next = %d, want 0", next)
			}
			var got []int64
			for _, e := range page {
				got = append(got, e.Index)
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Fatalf("List = %v, want %v", got, tc.want)
			}
			var buf bytes.Buffer
			if err := l.Export(ctx, &buf, tc.f); err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
			if buf.Len() == 0 {
				lines = nil
			}
			if len(lines) != len(tc.want) {
				t.Fatalf("Export wrote %d lines, want %d", len(lines), len(tc.want))
			}
			for i, line := range lines {
				if !strings.HasPrefix(line, fmt.Sprintf(`{"index":%d,`, tc.want[i])) {
					t.Fatalf("export line %d = %s", i, line)
				}
			}
		})
	}

	// The export is the stored bytes, exactly: re-encoding an entry is never needed.
	lines := bytes.Split(bytes.TrimSuffix(audittest.Export(t, l), []byte("\n")), []byte("\n"))
	if len(lines) != 20 {
		t.Fatalf("export has %d lines", len(lines))
	}
	if err := st.View(ctx, func(tx storage.Tx) error {
		for i, line := range lines {
			stored, err := tx.Audit().Entry(ctx, int64(i))
			if err != nil {
				return err
			}
			if !bytes.Equal(stored, line) {
				return fmt.Errorf("export line %d differs from the stored entry", i)
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

func auditCheckpointsAndProofs(t *testing.T, open Opener) {
	ctx := context.Background()
	l, v := auditLog(t, Fresh(t, open), audit.WithOrigin("example.org/hale audit"))
	if _, err := l.Latest(ctx); !errors.Is(err, audit.ErrNoCheckpoint) {
		t.Fatalf("Latest on a new log: %v, want audit.ErrNoCheckpoint", err)
	}
	audittest.AppendN(t, l, 0, 5)
	oldCP, err := l.Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(oldCP, []byte("example.org/hale audit\n5\n")) {
		t.Fatalf("checkpoint text:\n%s", oldCP)
	}
	again, err := l.Checkpoint(ctx)
	if err != nil || !bytes.Equal(again, oldCP) {
		t.Fatalf("second checkpoint at the same size differs: %v", err)
	}
	audittest.AppendN(t, l, 5, 8)
	newCP, err := l.Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	latest, err := l.Latest(ctx)
	if err != nil || !bytes.Equal(latest, newCP) {
		t.Fatalf("Latest is not the newest checkpoint: %v", err)
	}
	cp, err := audit.OpenCheckpoint(newCP, v)
	if err != nil {
		t.Fatal(err)
	}
	if cp.N != 13 || cp.Origin != "example.org/hale audit" {
		t.Fatalf("checkpoint = %+v", cp)
	}

	t.Run("inclusion", func(t *testing.T) {
		for i := int64(0); i < 13; i++ {
			p, err := l.InclusionProof(ctx, i, 0) // 0: the latest checkpoint's size
			if err != nil {
				t.Fatal(err)
			}
			e, err := audit.VerifyInclusion(newCP, v, p)
			if err != nil {
				t.Fatalf("entry %d: %v", i, err)
			}
			if e.Index != i {
				t.Fatalf("proof returned entry %d, want %d", e.Index, i)
			}
		}
		p, err := l.InclusionProof(ctx, 2, 5)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := audit.VerifyInclusion(oldCP, v, p); err != nil {
			t.Fatalf("proof in the old tree: %v", err)
		}
		if _, err := audit.VerifyInclusion(newCP, v, p); err == nil {
			t.Fatal("proof for a tree of 5 accepted against a checkpoint of 13")
		}

		p, err = l.InclusionProof(ctx, 6, 13)
		if err != nil {
			t.Fatal(err)
		}
		tampered := map[string]func(p *audit.InclusionProof){
			"entry byte": func(p *audit.InclusionProof) {
				p.Entry = bytes.Replace(p.Entry, []byte("tok_0"), []byte("tok_9"), 1)
			},
			"proof hash": func(p *audit.InclusionProof) { p.Proof[0][3] ^= 1 },
			"other index": func(p *audit.InclusionProof) {
				p.Index = 7
			},
			"short proof": func(p *audit.InclusionProof) { p.Proof = p.Proof[1:] },
			"no proof":    func(p *audit.InclusionProof) { p.Proof = nil },
		}
		for name, mutate := range tampered {
			q := *p
			q.Entry = bytes.Clone(p.Entry)
			q.Proof = append(tlog.RecordProof(nil), p.Proof...)
			mutate(&q)
			if _, err := audit.VerifyInclusion(newCP, v, &q); err == nil {
				t.Errorf("%s: tampered proof verified", name)
			}
		}
		if _, err := l.InclusionProof(ctx, 13, 13); err == nil {
			t.Error("proof for an entry past the tree")
		}
		if _, err := l.InclusionProof(ctx, 1, 14); err == nil {
			t.Error("proof for a tree larger than the log")
		}
	})

	t.Run("consistency", func(t *testing.T) {
		p, err := l.ConsistencyProof(ctx, 5, 13)
		if err != nil {
			t.Fatal(err)
		}
		if err := audit.VerifyConsistency(oldCP, newCP, v, p); err != nil {
			t.Fatal(err)
		}
		if err := audit.VerifyConsistency(newCP, oldCP, v, p); err == nil {
			t.Fatal("a shrinking log verified")
		}
		bad := append(tlog.TreeProof(nil), p...)
		bad[0][0] ^= 1
		if err := audit.VerifyConsistency(oldCP, newCP, v, bad); err == nil {
			t.Fatal("tampered consistency proof verified")
		}
		if err := audit.VerifyConsistency(oldCP, newCP, v, nil); err == nil {
			t.Fatal("empty consistency proof verified")
		}
		if err := audit.VerifyConsistency(newCP, newCP, v, nil); err != nil {
			t.Fatalf("a checkpoint is consistent with itself: %v", err)
		}
		if _, err := l.ConsistencyProof(ctx, 6, 5); err == nil {
			t.Fatal("proof from a larger to a smaller tree")
		}
		if _, err := l.ConsistencyProof(ctx, 5, 14); err == nil {
			t.Fatal("proof to a tree larger than the log")
		}
	})

	t.Run("wrong key", func(t *testing.T) {
		_, otherV, err := audit.GenerateKey("hale-audit-test")
		if err != nil {
			t.Fatal(err)
		}
		ov, err := audit.NewVerifier(otherV)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := audit.OpenCheckpoint(newCP, ov); err == nil {
			t.Fatal("checkpoint verified with another key")
		}
		forged := bytes.Replace(newCP, []byte("\n13\n"), []byte("\n12\n"), 1)
		if _, err := audit.OpenCheckpoint(forged, v); err == nil {
			t.Fatal("edited checkpoint verified")
		}
	})

	if err := l.VerifyStored(ctx); err != nil {
		t.Fatal(err)
	}
}

func auditConcurrentAppend(t *testing.T, open Opener) {
	ctx := context.Background()
	l, _ := auditLog(t, Fresh(t, open))
	const workers, each = 8, 25
	var wg sync.WaitGroup
	indexes := make(chan int64, workers*each)
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				idx, err := l.Append(ctx, audittest.Entry(w*each+i))
				if err != nil {
					errs <- err
					return
				}
				indexes <- idx
			}
		})
	}
	// Checkpoints and reads race with the writers.
	wg.Go(func() {
		for range 10 {
			if _, err := l.Checkpoint(ctx); err != nil {
				errs <- err
				return
			}
			if _, _, err := l.List(ctx, audit.Filter{}, 0, 50); err != nil {
				errs <- err
				return
			}
		}
	})
	wg.Wait()
	close(indexes)
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	seen := make([]bool, workers*each)
	for idx := range indexes {
		if idx < 0 || idx >= int64(len(seen)) || seen[idx] {
			t.Fatalf("index %d out of range or given twice", idx)
		}
		seen[idx] = true
	}
	if n, _ := l.Size(ctx); n != workers*each {
		t.Fatalf("size %d, want %d", n, workers*each)
	}
	if err := l.VerifyStored(ctx); err != nil {
		t.Fatal(err)
	}
	cp, err := l.Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_, v := audittest.Keys(t)
	if _, err := audit.VerifyExport(bytes.NewReader(audittest.Export(t, l)), cp, v); err != nil {
		t.Fatal(err)
	}
}

func auditRun(t *testing.T, open Opener) {
	ctx, cancel := context.WithCancel(context.Background())
	l, v := auditLog(t, Fresh(t, open))
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx, 5*time.Millisecond) }()
	audittest.AppendN(t, l, 0, 4)
	deadline := time.Now().Add(10 * time.Second)
	for {
		signed, err := l.Latest(ctx)
		if err == nil {
			cp, err := audit.OpenCheckpoint(signed, v)
			if err != nil {
				t.Fatal(err)
			}
			if cp.N == 4 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("Run made no checkpoint of 4 entries")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := l.Run(context.Background(), 0); err == nil {
		t.Fatal("Run accepted a zero interval")
	}
}

func auditEmptyLog(t *testing.T, open Opener) {
	ctx := context.Background()
	l, v := auditLog(t, Fresh(t, open))
	cp0, err := l.Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := audit.VerifyExport(bytes.NewReader(nil), cp0, v); err != nil {
		t.Fatalf("empty export against an empty checkpoint: %v", err)
	}
	if err := l.VerifyStored(ctx); err != nil {
		t.Fatal(err)
	}
	page, next, err := l.List(ctx, audit.Filter{}, 0, 10)
	if err != nil || len(page) != 0 || next != 0 {
		t.Fatalf("List on an empty log = %v, %d, %v", page, next, err)
	}
	audittest.AppendN(t, l, 0, 2)
	cp2, err := l.Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	p, err := l.ConsistencyProof(ctx, 0, 2)
	if err != nil {
		t.Fatal(err)
	}
	if err := audit.VerifyConsistency(cp0, cp2, v, p); err != nil {
		t.Fatal(err)
	}
	if _, err := audit.VerifyExport(bytes.NewReader(audittest.Export(t, l)), cp0, v); err != nil {
		t.Fatalf("entries past an empty checkpoint: %v", err)
	}
}
