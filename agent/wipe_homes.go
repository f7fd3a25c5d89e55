package agent

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// A policy's "~/" paths mean "in every local user's home". Root is a local user: its home is
// wiped like any other, with the same protections (confined to the home through os.Root, no
// symbolic link followed), while absolute paths stay limited to the wipe roots.

// localHomesFor returns the home directories of the local users on goos: from /etc/passwd on
// Linux and other Unix systems (interactive users and root), the folders of /Users plus root's
// home on macOS (whose users live in Directory Services, not /etc/passwd), and the profile
// folders of C:\Users on Windows.
func localHomesFor(goos string) []string {
	switch goos {
	case "windows":
		drive := os.Getenv("SystemDrive")
		if drive == "" {
			drive = "C:"
		}
		return userFolders(drive+`\Users`, "Public", "Default", "Default User", "All Users", "WDAGUtilityAccount")
	case "darwin":
		passwd, _ := os.ReadFile("/etc/passwd")
		homes := []string{}
		for _, h := range localHomes(passwd) {
			if !strings.HasPrefix(h, "/Users/") {
				homes = append(homes, h) // root's /var/root; /Users is listed below
			}
		}
		return append(homes, userFolders("/Users", "Shared", "Guest")...)
	default:
		passwd, _ := os.ReadFile("/etc/passwd") // unreadable: "~/" paths are refused as unexpanded
		return localHomes(passwd)
	}
}

// userFolders lists the directories in dir that are user homes: not hidden, not in skip.
func userFolders(dir string, skip ...string) []string {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var homes []string
next:
	for _, e := range entries {
		if !e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		for _, s := range skip {
			if strings.EqualFold(e.Name(), s) {
				continue next
			}
		}
		homes = append(homes, filepath.Join(dir, e.Name()))
	}
	return homes
}

// localHomes returns the home directories of the local accounts in passwd (the contents of
// /etc/passwd): interactive users (uid >= 1000, not nobody) and root, each once.
func localHomes(passwd []byte) []string {
	var homes []string
	seen := map[string]bool{}
	for _, line := range strings.Split(string(passwd), "\n") {
		f := strings.Split(line, ":")
		if len(f) < 7 || !filepath.IsAbs(f[5]) {
			continue
		}
		uid, err := strconv.Atoi(f[2])
		if err != nil || (uid != 0 && (uid < 1000 || uid == 65534)) {
			continue
		}
		if h := filepath.Clean(f[5]); !seen[h] {
			seen[h] = true
			homes = append(homes, h)
		}
	}
	return homes
}
