package localapi

import "testing"

func TestInjected(t *testing.T) {
	for _, c := range []struct {
		env, args []string
		bad       bool
	}{
		{env: []string{"HOME=/home/alice", "LANG=C"}, args: []string{"/opt/chat/chat", "--enable-features=X"}},
		{env: []string{"LD_PRELOAD="}, args: []string{"chat"}}, // set but empty: the loader loads nothing
		{env: []string{"LD_PRELOAD=/tmp/hook.so"}, bad: true},
		{env: []string{"DYLD_INSERT_LIBRARIES=/tmp/hook.dylib"}, bad: true},
		{env: []string{"ELECTRON_RUN_AS_NODE=1"}, bad: true},
		{env: []string{"NODE_OPTIONS=--require x"}, bad: true},
		{env: []string{"LD_LIBRARY_PATH=/tmp"}, bad: true},
		{args: []string{"chat", "--inspect"}, bad: true},
		{args: []string{"chat", "--inspect-brk=0.0.0.0:9229"}, bad: true},
		{args: []string{"chat", "--remote-debugging-port=9222"}, bad: true},
		{args: []string{"--inspect"}},                      // argv[0] is the name, not a flag
		{args: []string{"chat", "--", "--inspect"}},        // after "--" nothing is a flag
		{args: []string{"chat", "--inspector-theme=dark"}}, // another flag that only starts alike
		{env: []string{"MY_LD_PRELOAD=/tmp/x"}, args: []string{"chat"}},
	} {
		if got := injected(c.env, c.args); (got != "") != c.bad {
			t.Errorf("env %q args %q: %q, want tampered=%v", c.env, c.args, got, c.bad)
		}
	}
}
