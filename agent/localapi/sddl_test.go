package localapi

import (
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// ace is one access control entry of an SDDL string: type (A allow, D deny), rights, trustee.
type ace struct {
	typ, rights, sid string
}

// parseDACL reads "D:<flags>(ace)(ace)..." strictly: any other shape fails the test.
func parseDACL(t *testing.T, sddl string) (flags string, aces []ace) {
	t.Helper()
	m := regexp.MustCompile(`^D:([A-Z]*)((?:\([^()]*\))+)$`).FindStringSubmatch(sddl)
	if m == nil {
		t.Fatalf("%q is not a DACL-only SDDL string", sddl)
	}
	for _, a := range regexp.MustCompile(`\(([^()]*)\)`).FindAllStringSubmatch(m[2], -1) {
		f := strings.Split(a[1], ";")
		if len(f) != 6 || f[1] != "" || f[3] != "" || f[4] != "" {
			t.Fatalf("ACE %q: want type;;rights;;;sid (no flags, object types or inheritance)", a[1])
		}
		aces = append(aces, ace{f[0], f[2], f[5]})
	}
	return m[1], aces
}

// rightsMask is an ACE's rights as a mask of file rights; generic rights are mapped as a
// named pipe maps them (FILE_GENERIC_*; GA is everything).
func rightsMask(t *testing.T, r string) uint32 {
	if strings.HasPrefix(r, "0x") {
		v, err := strconv.ParseUint(r[2:], 16, 32)
		if err != nil {
			t.Fatalf("rights %q", r)
		}
		return uint32(v)
	}
	const genericRead, genericWrite = 0x120089, 0x120116
	var m uint32
	for i := 0; i+2 <= len(r); i += 2 {
		switch r[i : i+2] {
		case "GA":
			m |= 0x1f01ff
		case "GR":
			m |= genericRead
		case "GW":
			m |= genericWrite
		default:
			t.Fatalf("unexpected right %q", r[i:i+2])
		}
	}
	return m
}

// The pipe's ACL, as a value (a named pipe itself exists only on Windows): protected; network
// logons denied first; SYSTEM and administrators in full; interactive users may read and write
// but not create pipe instances; nobody else (Everyone, anonymous, authenticated users over
// the network) has an entry.
func TestPipeSDDL(t *testing.T) {
	flags, aces := parseDACL(t, PipeSDDL)
	if flags != "P" {
		t.Fatalf("DACL flags %q, want P (protected, nothing inherited)", flags)
	}
	if len(aces) == 0 || aces[0] != (ace{"D", "GA", "NU"}) {
		t.Fatalf("first ACE %+v, want the network deny", aces)
	}
	const (
		fileReadData           = 0x1
		fileWriteData          = 0x2
		fileCreatePipeInstance = 0x4 // FILE_APPEND_DATA on a pipe
		writeDAC, writeOwner   = 0x40000, 0x80000
	)
	seen := map[string]uint32{}
	for _, a := range aces[1:] {
		if a.typ != "A" {
			t.Fatalf("ACE %+v: only one deny, first", a)
		}
		switch a.sid {
		case "SY", "BA", "IU":
		default:
			t.Fatalf("ACE %+v grants a trustee other than SYSTEM, administrators and interactive users", a)
		}
		seen[a.sid] = rightsMask(t, a.rights)
	}
	if seen["SY"] != 0x1f01ff || seen["BA"] != 0x1f01ff {
		t.Fatalf("SYSTEM %#x, administrators %#x: want full control", seen["SY"], seen["BA"])
	}
	iu := seen["IU"]
	if iu&(fileReadData|fileWriteData) != fileReadData|fileWriteData {
		t.Fatalf("interactive users %#x cannot read and write", iu)
	}
	if iu&(fileCreatePipeInstance|writeDAC|writeOwner) != 0 {
		t.Fatalf("interactive users %#x may create pipe instances or change the ACL", iu)
	}
}
