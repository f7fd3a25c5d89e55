package remediation_test

import (
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/halemdm/hale/policies"
	"github.com/halemdm/hale/remediation"
)

// reasonSources are the packages whose Code*/Reason* string constants are reason codes a
// device's user can be shown: the evaluator's, the access answer's and the SDK's.
var reasonSources = []string{"../policies", "../posture", "../mdmserver/access", "../mdmserver/breakglass"}

var reasonConst = regexp.MustCompile(`^(Code|Reason)[A-Z]`)

// declaredCodes finds every reason code constant in the source directories: a new code added
// anywhere there without a catalog entry fails TestEveryReasonHasAnEntry.
func declaredCodes(t *testing.T) map[string]string {
	t.Helper()
	codes := map[string]string{}
	fset := token.NewFileSet()
	for _, dir := range reasonSources {
		files, _ := filepath.Glob(filepath.Join(dir, "*.go"))
		for _, path := range files {
			if strings.HasSuffix(path, "_test.go") {
				continue
			}
			f, err := parser.ParseFile(fset, path, nil, 0)
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range f.Decls {
				g, ok := d.(*ast.GenDecl)
				if !ok || g.Tok != token.CONST {
					continue
				}
				for _, spec := range g.Specs {
					vs := spec.(*ast.ValueSpec)
					for i, name := range vs.Names {
						if !reasonConst.MatchString(name.Name) || i >= len(vs.Values) {
							continue
						}
						lit, ok := vs.Values[i].(*ast.BasicLit)
						if !ok || lit.Kind != token.STRING {
							continue // an alias of another package's constant
						}
						v, _ := strconv.Unquote(lit.Value)
						codes[v] = path + ": " + name.Name
					}
				}
			}
		}
	}
	if len(codes) < 40 {
		t.Fatalf("found only %d reason codes: has a source moved?", len(codes))
	}
	return codes
}

func TestEveryReasonHasAnEntry(t *testing.T) {
	c := remediation.Default()
	codes := declaredCodes(t)
	for _, code := range policies.ReasonCodes {
		codes[code] = "policies.ReasonCodes"
	}
	for code, where := range codes {
		if !c.Has(code) {
			t.Errorf("reason code %q (%s) has no entry in remediation/catalog.yaml", code, where)
		}
	}
}

func TestEveryEntryIsComplete(t *testing.T) {
	c := remediation.Default()
	if got := c.Languages(); !slices.Equal(got, []string{"en", "es"}) {
		t.Fatalf("languages %v", got)
	}
	for _, code := range c.Codes() {
		for _, lang := range c.Languages() {
			for _, p := range remediation.Platforms {
				it := c.Item(code, remediation.Request{Lang: lang, Platform: p, HelpDesk: remediation.HelpDesk{Name: "Desk", Phone: "+1 555 0100"}})
				if it.Title == "" || it.Explanation == "" || len(it.Steps) == 0 || it.Lang != lang || it.Platform != p {
					t.Errorf("%s/%s/%s: incomplete %+v", code, lang, p, it)
				}
				for _, s := range it.Steps {
					if strings.Contains(s, "{") {
						t.Errorf("%s/%s/%s: unreplaced placeholder in %q", code, lang, p, s)
					}
				}
				if !it.UserFixable && (it.Contact != "Desk (+1 555 0100)" || !slices.ContainsFunc(it.Steps, func(s string) bool { return strings.Contains(s, "Desk (+1 555 0100)") })) {
					t.Errorf("%s/%s/%s: a reason the user cannot fix must name the help desk: %+v", code, lang, p, it)
				}
			}
		}
	}
}

func TestCannotFixNamesTheHelpDesk(t *testing.T) {
	c := remediation.Default()
	for _, code := range []string{"device_wiped", "device_lost", "certificate_revoked", "jailbroken"} {
		it := c.Item(code, remediation.Request{Lang: "es", Platform: "ios"})
		if it.UserFixable || it.Contact != "el servicio de ayuda de su organización" {
			t.Errorf("%s: %+v", code, it)
		}
	}
	if it := c.Item("os_too_old", remediation.Request{Lang: "en", Platform: "android"}); !it.UserFixable || it.Contact != "" {
		t.Errorf("os_too_old: %+v", it)
	}
}

func TestMatch(t *testing.T) {
	c := remediation.Default()
	for header, want := range map[string]string{
		"":                            "en",
		"es":                          "es",
		"es-MX,es;q=0.9,en;q=0.8":     "es",
		"fr-FR, es;q=0.5":             "es",
		"en-GB,en;q=0.9,es;q=0.8":     "en",
		"de":                          "en",
		"*":                           "en",
		"es;q=garbage":                "en",
		strings.Repeat("es,", 500):    "en", // over MaxAcceptLanguage
		"\x00\xff":                    "en",
		"pt-BR;q=0.9, es-419;q=0.8":   "es",
		"zh-Hant-TW, en-US;q=0.1, es": "es",
	} {
		if got := c.Match(header); got != want {
			t.Errorf("Match(%q) = %q, want %q", header, got, want)
		}
	}
}

func TestItemRendersPlatformAndFallbacks(t *testing.T) {
	c := remediation.Default()
	it := c.Item("os_too_old", remediation.Request{Lang: "es", Platform: "ios"})
	if !strings.Contains(it.Steps[len(it.Steps)-1], "Actualización de software") {
		t.Errorf("es/ios steps %q", it.Steps)
	}
	all := c.Item("os_too_old", remediation.Request{Lang: "en"})
	if all.Platform != "" || len(all.Steps) != 0 || len(all.StepsByPlatform) != len(remediation.Platforms) {
		t.Errorf("unknown platform: %+v", all)
	}
	unknown := c.Item("no_such_code", remediation.Request{Lang: "fr", Platform: "linux"})
	if unknown.Code != "no_such_code" || unknown.Lang != "en" || unknown.UserFixable || unknown.Contact == "" || unknown.Title == "" {
		t.Errorf("unknown code: %+v", unknown)
	}
	if got := c.Items([]string{"os_too_old", "os_too_old", "jailbroken"}, remediation.Request{}); len(got) != 2 {
		t.Errorf("Items did not drop the repeated code: %d", len(got))
	}
}

func TestParseRefusesIncompleteCatalogs(t *testing.T) {
	good, err := os.ReadFile("catalog.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := remediation.Parse(good); err != nil {
		t.Fatal(err)
	}
	for name, edit := range map[string]func(string) string{
		"missing language": func(s string) string {
			return strings.Replace(s, "    es:\n      title: El equipo de seguridad bloqueó su dispositivo", "    fr:\n      title: x", 1)
		},
		"missing platform": func(s string) string {
			return strings.Replace(s, `        android: ["Open Settings > Security > Screen lock.", "Choose PIN or Password and set one."]`+"\n", "", 1)
		},
		"empty title": func(s string) string {
			return strings.Replace(s, "title: This device was wiped", "title: ''", 1)
		},
		"unfixable without help desk": func(s string) string {
			return strings.Replace(s, `steps: {all: ["Contact {helpdesk} to enroll the device again or to get a replacement."]}`, `steps: {all: ["Wait."]}`, 1)
		},
		"unknown platform": func(s string) string {
			return strings.Replace(s, "        ios: [\"Connect to Wi-Fi and power.\"", "        tvos: [\"x\"]\n        ios: [\"Connect to Wi-Fi and power.\"", 1)
		},
		"not yaml": func(string) string { return "{[" },
		"no helpdesk": func(s string) string {
			return strings.Replace(s, "  es: el servicio de ayuda de su organización\n", "", 1)
		},
	} {
		bad := edit(string(good))
		if bad == string(good) {
			t.Fatalf("%s: the edit did not apply", name)
		}
		if _, err := remediation.Parse([]byte(bad)); !errors.Is(err, remediation.ErrInvalid) {
			t.Errorf("%s: Parse = %v, want ErrInvalid", name, err)
		}
	}
}

func FuzzMatch(f *testing.F) {
	for _, s := range []string{"", "es", "es-MX,es;q=0.9", "en;q=1.5", "*;q=0", ",,,;;"} {
		f.Add(s)
	}
	c := remediation.Default()
	f.Fuzz(func(t *testing.T, header string) {
		if got := c.Match(header); !slices.Contains(c.Languages(), got) {
			t.Fatalf("Match(%q) = %q", header, got)
		}
	})
}

func FuzzParse(f *testing.F) {
	good, _ := os.ReadFile("catalog.yaml")
	f.Add(good)
	f.Add([]byte("languages: [en]\nplatforms: []\nreasons: {}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := remediation.Parse(data)
		if err != nil {
			return
		}
		for _, code := range c.Codes() {
			_ = c.Item(code, remediation.Request{Lang: "es", Platform: "linux"})
		}
	})
}
