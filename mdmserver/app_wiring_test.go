package mdmserver

import (
	"strings"
	"testing"

	"github.com/halemdm/hale/internal/playsim"
)

// The app_* options: each platform set whole or not at all, or the server does not start.
func TestAppConfigValidation(t *testing.T) {
	play, err := playsim.New()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, want string
		set        func(*Config)
	}{
		{"nothing set", "", func(*Config) {}},
		{"iOS whole", "", func(c *Config) { c.AppIOSTeamID, c.AppIOSBundleID = "ABCDE12345", "org.example.app" }},
		{"iOS development", "", func(c *Config) {
			c.AppIOSTeamID, c.AppIOSBundleID, c.AppIOSEnvironment = "ABCDE12345", "org.example.app", "development"
		}},
		{"team without bundle", "app_ios_team_id and app_ios_bundle_id", func(c *Config) { c.AppIOSTeamID = "ABCDE12345" }},
		{"unknown environment", "unknown environment", func(c *Config) {
			c.AppIOSTeamID, c.AppIOSBundleID, c.AppIOSEnvironment = "ABCDE12345", "org.example.app", "staging"
		}},
		{"missing roots file", "app_ios_roots_file", func(c *Config) {
			c.AppIOSTeamID, c.AppIOSBundleID, c.AppIOSRootsFile = "ABCDE12345", "org.example.app", "/nonexistent.pem"
		}},
		{"Android whole", "", func(c *Config) {
			c.AppAndroidPackage, c.AppAndroidDecryptKey, c.AppAndroidVerifyKey = "org.example.app", play.DecryptionKey, play.VerificationKey
			c.AppAndroidCertDigests = []string{playsim.CertificateDigest([]byte("cert"))}
		}},
		{"Android without digests", "app_android_certificate_digests", func(c *Config) {
			c.AppAndroidPackage, c.AppAndroidDecryptKey, c.AppAndroidVerifyKey = "org.example.app", play.DecryptionKey, play.VerificationKey
		}},
		{"Android without keys", "app_android_*", func(c *Config) { c.AppAndroidPackage = "org.example.app" }},
	} {
		cfg := Defaults()
		cfg.DataDir = t.TempDir()
		c.set(&cfg)
		err := cfg.Validate()
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v", c.name, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: %v, want an error naming %s", c.name, err, c.want)
		}
	}
}
