// Package toolneed lets a test depend on an external program (dpkg-deb, rpm, wixl, msiinfo,
// osslsigncode): without it the test skips on a developer's machine and fails in CI (CI set),
// where .ci/run installs it and a skip would pass without testing anything.
package toolneed

import (
	"os"
	"os/exec"
	"testing"
)

// Require skips t, or fails it in CI, unless every one of tools is on PATH.
func Require(t testing.TB, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("%s is not installed; .ci/run installs it", tool)
			}
			t.Skipf("%s is not installed (Debian: see .ci/run)", tool)
		}
	}
}
