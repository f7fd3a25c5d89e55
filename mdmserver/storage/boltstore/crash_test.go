package boltstore

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/micromdm/nanolib/storage/kv"
)

const (
	crashEnvPath  = "HALE_STORE_CRASH_HELPER_DB"
	crashEnvStart = "HALE_STORE_CRASH_HELPER_START"
	crashBucket   = "crash"
)

func crashSingleKey(i int) string { return fmt.Sprintf("single-%06d", i) }
func crashTxnKey(i int, s string) string {
	return fmt.Sprintf("txn-%06d-%s", i, s)
}

// crashValue is the value written at key: derived from the key so the
// parent can verify it, and of varying size so pages split and overflow.
func crashValue(key string) []byte {
	n, _ := strconv.Atoi(key[len(key)-1:])
	return []byte(key + strings.Repeat("#", 37*n+len(key)*13))
}

// TestHelperProcess is the child of TestCrashDurability: it does nothing
// unless started by it. It writes forever (until killed) and prints "ack N"
// to stdout only after the write numbered N returned success. Even N is a
// plain Set; odd N is a transaction setting two keys and deleting the
// preceding Set's key.
func TestHelperProcess(t *testing.T) {
	path := os.Getenv(crashEnvPath)
	if path == "" {
		return
	}
	start, err := strconv.Atoi(os.Getenv(crashEnvStart))
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.Bucket(crashBucket)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	deadline := time.Now().Add(2 * time.Minute) // in case the parent died
	for i := start; time.Now().Before(deadline); i++ {
		if i%2 == 0 {
			key := crashSingleKey(i)
			err = b.Set(ctx, key, crashValue(key))
		} else {
			err = kv.PerformBucketTxn(ctx, b, func(ctx context.Context, txn kv.Bucket) error {
				for _, k := range []string{crashTxnKey(i, "a"), crashTxnKey(i, "b")} {
					if err := txn.Set(ctx, k, crashValue(k)); err != nil {
						return err
					}
				}
				return txn.Delete(ctx, crashSingleKey(i-1))
			})
		}
		if err != nil {
			t.Fatal(err)
		}
		if _, err := fmt.Fprintf(os.Stdout, "ack %d\n", i); err != nil {
			return // parent went away
		}
	}
}

// runCrashChild starts the helper on path from write number start, kills
// it with SIGKILL after killAfter acknowledgements and returns every
// acknowledged write number.
func runCrashChild(t *testing.T, path string, start, killAfter int) []int {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashEnvPath+"="+path, crashEnvStart+"="+strconv.Itoa(start))
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var acked []int
	killed := false
	r := bufio.NewReader(stdout)
	for {
		line, err := r.ReadString('\n')
		if errors.Is(err, io.EOF) {
			break // a trailing fragment without '\n' is not an acknowledgement
		} else if err != nil {
			t.Fatal(err)
		}
		if n, ok := strings.CutPrefix(strings.TrimSpace(line), "ack "); ok {
			i, err := strconv.Atoi(n)
			if err != nil {
				t.Fatalf("bad helper line %q", line)
			}
			acked = append(acked, i)
		}
		if len(acked) == killAfter && !killed {
			// Kill mid-stream: the child is already inside its next write.
			if err := cmd.Process.Kill(); err != nil {
				t.Fatal(err)
			}
			killed = true
		}
	}
	err = cmd.Wait()
	if !killed {
		t.Fatalf("helper exited before %d acknowledgements (got %d): %v", killAfter, len(acked), err)
	}
	return acked
}

func TestCrashDurability(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hale.db")
	ctx := context.Background()
	next := 0
	// written holds, per round, the first write number and one past the
	// last acknowledged one: every write that may have committed.
	var written [][2]int
	for round := range 3 {
		acked := runCrashChild(t, path, next, 120)
		last := acked[len(acked)-1]
		written = append(written, [2]int{next, last + 1})
		s, err := Open(path)
		if err != nil {
			t.Fatalf("round %d: reopening after kill -9: %v", round, err)
		}
		if err := s.Check(); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		b, err := s.Bucket(crashBucket)
		if err != nil {
			t.Fatal(err)
		}
		get := func(key string) (present bool) {
			v, err := b.Get(ctx, key)
			if errors.Is(err, kv.ErrKeyNotFound) {
				return false
			} else if err != nil {
				t.Fatal(err)
			}
			if string(v) != string(crashValue(key)) {
				t.Errorf("round %d: %s has a wrong value (%d bytes)", round, key, len(v))
			}
			return true
		}
		// Check every write of every round so far for atomicity, and the
		// acknowledged ones for presence: later rounds must not lose
		// earlier ones either.
		for _, span := range written {
			for i := span[0]; i <= span[1]; i++ {
				checkCrashWrite(t, round, i, i < span[1], get, b)
			}
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		t.Logf("round %d: %d writes acknowledged before kill -9 (%d..%d), all present", round, len(acked), next, last)
		// Continue after anything that may have committed unacknowledged,
		// on an even number so the pairing of writes stays the same.
		next = last + 2
		if next%2 != 0 {
			next++
		}
	}
}

// checkCrashWrite checks write number i after a crash: an acknowledged
// write is present, and a transaction is all there or not at all.
func checkCrashWrite(t *testing.T, round, i int, isAcked bool, get func(string) bool, b *Bucket) {
	t.Helper()
	if i%2 == 0 {
		// Only the next transaction may have removed a single write.
		if !get(crashSingleKey(i)) && !get(crashTxnKey(i+1, "a")) && isAcked {
			t.Errorf("round %d: acknowledged write %d lost", round, i)
		}
		return
	}
	a, bb := get(crashTxnKey(i, "a")), get(crashTxnKey(i, "b"))
	single, err := b.Has(context.Background(), crashSingleKey(i-1))
	if err != nil {
		t.Fatal(err)
	}
	if a != bb || a == single {
		t.Errorf("round %d: transaction %d half applied: a=%v b=%v preceding-key-still-there=%v", round, i, a, bb, single)
	}
	if isAcked && !a {
		t.Errorf("round %d: acknowledged transaction %d lost", round, i)
	}
}
