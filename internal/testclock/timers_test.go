package testclock

import (
	"testing"
	"time"
)

func TestAfterFunc(t *testing.T) {
	c := New(time.Unix(0, 0))
	fired := make(chan string, 3)
	c.AfterFunc(time.Minute, func() { fired <- "a" })
	stop := c.AfterFunc(2*time.Minute, func() { fired <- "b" })
	c.Advance(59 * time.Second)
	select {
	case f := <-fired:
		t.Fatalf("%s fired early", f)
	case <-time.After(20 * time.Millisecond):
	}
	c.Advance(time.Second)
	if f := <-fired; f != "a" {
		t.Fatalf("fired %s", f)
	}
	if !stop() || stop() {
		t.Fatal("stop should report a pending timer once")
	}
	c.Advance(time.Hour)
	c.AfterFunc(0, func() { fired <- "now" })
	if f := <-fired; f != "now" {
		t.Fatalf("fired %s", f)
	}
}
