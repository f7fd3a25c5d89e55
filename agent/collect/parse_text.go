package collect

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// maxInput bounds what any parser accepts; every source is a small text file or tool output.
const maxInput = MaxFileSize

// maxLines bounds how many lines a parser looks at.
const maxLines = 100000

var errTooLarge = fmt.Errorf("input larger than %d bytes; refusing to parse it", maxInput)

// lines calls fn with each line of data, trimmed of surrounding space, stopping at the first
// error. It refuses oversized input.
func lines(data []byte, fn func(line string) error) error {
	if len(data) > maxInput {
		return errTooLarge
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), maxInput+1)
	n := 0
	for sc.Scan() {
		n++
		if n > maxLines {
			return fmt.Errorf("more than %d lines; refusing to parse it", maxLines)
		}
		if err := fn(strings.TrimSpace(sc.Text())); err != nil {
			return err
		}
	}
	return sc.Err()
}

// parseKeyValue parses shell-style KEY=value files (os-release, logind session files,
// ufw.conf). Values may be single- or double-quoted; comments and blank lines are skipped.
func parseKeyValue(data []byte) (map[string]string, error) {
	m := make(map[string]string)
	err := lines(data, func(l string) error {
		if l == "" || l[0] == '#' {
			return nil
		}
		k, v, ok := strings.Cut(l, "=")
		if !ok {
			return nil // not an assignment; the formats allow nothing else, so ignore it
		}
		m[strings.TrimSpace(k)] = unquote(strings.TrimSpace(v))
		return nil
	})
	return m, err
}

// unquote removes one level of shell quoting from v.
func unquote(v string) string {
	if len(v) >= 2 {
		switch {
		case v[0] == '\'' && v[len(v)-1] == '\'':
			return v[1 : len(v)-1]
		case v[0] == '"' && v[len(v)-1] == '"':
			v = v[1 : len(v)-1]
			var b strings.Builder
			for i := 0; i < len(v); i++ {
				if v[i] == '\\' && i+1 < len(v) {
					i++
				}
				b.WriteByte(v[i])
			}
			return b.String()
		}
	}
	return v
}

// iniFile is a parsed keyfile (dconf keyfiles, KDE's kscreenlockerrc).
type iniFile struct {
	groups map[string]map[string]string
	// immutable records KDE's [$i] markers, by group and by "group/key".
	immutable map[string]bool
}

func (f iniFile) get(group, key string) (string, bool) {
	v, ok := f.groups[group][key]
	return v, ok
}

// parseINI parses a keyfile. KDE's "[$i]" immutability markers on groups and keys are recorded
// and stripped from the names.
func parseINI(data []byte) (iniFile, error) {
	f := iniFile{groups: map[string]map[string]string{}, immutable: map[string]bool{}}
	group := ""
	err := lines(data, func(l string) error {
		if l == "" || l[0] == '#' || l[0] == ';' {
			return nil
		}
		if l[0] == '[' && l[len(l)-1] == ']' {
			group = l[1 : len(l)-1]
			if g, ok := strings.CutSuffix(group, "][$i"); ok {
				group = g
				f.immutable[group] = true
			}
			if f.groups[group] == nil {
				f.groups[group] = map[string]string{}
			}
			return nil
		}
		k, v, ok := strings.Cut(l, "=")
		if !ok {
			return nil
		}
		k = strings.TrimSpace(k)
		if kk, ok := strings.CutSuffix(k, "[$i]"); ok {
			k = kk
			f.immutable[group+"/"+k] = true
		}
		if f.groups[group] == nil {
			f.groups[group] = map[string]string{}
		}
		f.groups[group][k] = strings.TrimSpace(v)
		return nil
	})
	return f, err
}

// parseBoolWord parses the spellings of a boolean the tools and config files use.
func parseBoolWord(s string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "true", "yes", "on", "1":
		return true, nil
	case "false", "no", "off", "0":
		return false, nil
	}
	return false, fmt.Errorf("%q is not a boolean", truncate(s))
}

// parseGVariantUint parses a GVariant text integer as printed by gsettings or written in dconf
// keyfiles: "uint32 300" or "300".
func parseGVariantUint(s string) (uint32, error) {
	s = strings.TrimSpace(s)
	s = strings.TrimPrefix(s, "uint32 ")
	n, err := strconv.ParseUint(strings.TrimSpace(s), 10, 32)
	if err != nil {
		return 0, fmt.Errorf("%q is not a uint32", truncate(s))
	}
	return uint32(n), nil
}

// truncate keeps error messages about hostile input short.
func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

var errEmpty = errors.New("empty output")
