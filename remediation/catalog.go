// Package remediation turns Hale's reason codes into what the device's user reads: a title, a
// one-paragraph explanation and the steps that fix it on the user's platform, in the user's
// language, and whom to call when the user cannot fix it alone.
//
// The words are data (catalog.yaml, embedded), so a new language or a better step is an edit
// to one file, and the catalog is checked when it is parsed: every entry must have every
// language the catalog claims, a title, an explanation and steps for every platform. The server
// (the access answer, the "my device" page) and package posture (a backend's denials) render
// from the same catalog. It imports nothing of the server.
package remediation

import (
	_ "embed"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
	"golang.org/x/text/language"
)

//go:embed catalog.yaml
var catalogYAML []byte

// Platforms are the platforms every entry has steps for (policies.Platform values).
var Platforms = []string{"ios", "ipados", "macos", "windows", "linux", "android"}

// allPlatforms is the steps key that applies to every platform without its own list.
const allPlatforms = "all"

// HelpDeskPlaceholder is replaced in steps by the organisation's help desk.
const HelpDeskPlaceholder = "{helpdesk}"

// MaxAcceptLanguage bounds the Accept-Language header Match parses; a longer one is ignored.
const MaxAcceptLanguage = 1024

// Item is the remediation of one reason, ready to show as is (the wire form: the access
// answer's and a backend denial's "remediation" members).
type Item struct {
	// Code is the reason code this remediates.
	Code string `json:"code"`
	// Lang is the language tag the text is in ("en", "es").
	Lang        string `json:"lang"`
	Title       string `json:"title"`
	Explanation string `json:"explanation"`
	// Platform is the platform Steps are for; empty when the device's platform is unknown,
	// and StepsByPlatform then holds every platform's.
	Platform        string              `json:"platform,omitempty"`
	Steps           []string            `json:"steps,omitempty"`
	StepsByPlatform map[string][]string `json:"steps_by_platform,omitempty"`
	// UserFixable is false for reasons only the organisation can clear (wiped, lost, revoked):
	// the steps then name Contact.
	UserFixable bool `json:"user_fixable"`
	// Contact is the organisation's help desk as the steps name it.
	Contact string `json:"contact,omitempty"`
}

// HelpDesk is whom users call about what they cannot fix: from the server's config. Empty
// fields are left out; all empty reads as "your organisation's help desk".
type HelpDesk struct {
	Name  string `json:"name,omitempty"`
	Phone string `json:"phone,omitempty"`
	Email string `json:"email,omitempty"`
	URL   string `json:"url,omitempty"`
}

// text is one language's words for one reason.
type text struct {
	Title       string              `yaml:"title"`
	Explanation string              `yaml:"explanation"`
	Steps       map[string][]string `yaml:"steps"`
}

// entry is one reason: fixable, and its text per language.
type entry struct {
	Fixable bool
	Text    map[string]text
}

// UnmarshalYAML reads "fixable" and one member per language.
func (e *entry) UnmarshalYAML(n *yaml.Node) error {
	var raw map[string]yaml.Node
	if err := n.Decode(&raw); err != nil {
		return err
	}
	e.Text = map[string]text{}
	for k, v := range raw {
		if k == "fixable" {
			if err := v.Decode(&e.Fixable); err != nil {
				return fmt.Errorf("line %d: fixable: %w", v.Line, err)
			}
			continue
		}
		var t text
		if err := v.Decode(&t); err != nil {
			return fmt.Errorf("line %d: %s: %w", v.Line, k, err)
		}
		e.Text[k] = t
	}
	return nil
}

// Catalog is a parsed, validated remediation catalog. It is immutable and safe for concurrent
// use.
type Catalog struct {
	langs   []string // base tags, the first is the default
	tags    []language.Tag
	matcher language.Matcher
	reasons map[string]entry
	generic map[string]text   // for codes the catalog does not know: fail safe, not silent
	desk    map[string]string // an unconfigured help desk's name per language
}

type file struct {
	Languages []string `yaml:"languages"`
	// HelpDesk is how steps name an unconfigured help desk, per language.
	HelpDesk  map[string]string `yaml:"helpdesk"`
	Platforms []string          `yaml:"platforms"`
	Reasons   map[string]entry  `yaml:"reasons"`
}

// ErrInvalid wraps every reason Parse refuses a catalog for.
var ErrInvalid = errors.New("remediation: invalid catalog")

// Parse reads and validates a catalog: every reason has text in every language, a title, an
// explanation and at least one step for every platform (its own or "all"); reasons a user
// cannot fix name the help desk on every platform.
func Parse(data []byte) (*Catalog, error) {
	var f file
	if err := yaml.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if len(f.Languages) == 0 || len(f.Reasons) == 0 {
		return nil, fmt.Errorf("%w: languages and reasons are required", ErrInvalid)
	}
	if !slices.Equal(f.Platforms, Platforms) {
		return nil, fmt.Errorf("%w: platforms must be %v", ErrInvalid, Platforms)
	}
	c := &Catalog{reasons: f.Reasons, desk: f.HelpDesk}
	for _, l := range f.Languages {
		t, err := language.Parse(l)
		if err != nil {
			return nil, fmt.Errorf("%w: language %q: %v", ErrInvalid, l, err)
		}
		c.langs = append(c.langs, l)
		c.tags = append(c.tags, t)
	}
	c.matcher = language.NewMatcher(c.tags)
	var errs []error
	for _, l := range f.Languages {
		if strings.TrimSpace(f.HelpDesk[l]) == "" {
			errs = append(errs, fmt.Errorf("helpdesk: no %s name", l))
		}
	}
	if _, ok := f.Reasons[genericCode]; !ok {
		errs = append(errs, fmt.Errorf("%s: required (codes without an entry render it)", genericCode))
	}
	for code, e := range f.Reasons {
		errs = append(errs, validEntry(code, e, f.Languages))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	c.generic = map[string]text{}
	for _, l := range c.langs {
		c.generic[l] = f.Reasons[genericCode].Text[l]
	}
	return c, nil
}

// genericCode is the entry unknown codes borrow (package posture's ReasonInternalError, named
// here to keep this package free of imports).
const genericCode = "internal_error"

func validEntry(code string, e entry, langs []string) error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{code}, args...)...))
	}
	for lang := range e.Text {
		if !slices.Contains(langs, lang) {
			bad("language %q is not in the catalog's languages", lang)
		}
	}
	for _, lang := range langs {
		t, ok := e.Text[lang]
		if !ok {
			bad("no %s text", lang)
			continue
		}
		if strings.TrimSpace(t.Title) == "" || strings.TrimSpace(t.Explanation) == "" {
			bad("%s: title and explanation are required", lang)
		}
		for p := range t.Steps {
			if p != allPlatforms && !slices.Contains(Platforms, p) {
				bad("%s: steps for unknown platform %q", lang, p)
			}
		}
		for _, p := range Platforms {
			steps := t.steps(p)
			if len(steps) == 0 {
				bad("%s: no steps for %s", lang, p)
			}
			for _, s := range steps {
				if strings.TrimSpace(s) == "" {
					bad("%s: an empty step for %s", lang, p)
				}
			}
			if !e.Fixable && !slices.ContainsFunc(steps, func(s string) bool { return strings.Contains(s, HelpDeskPlaceholder) }) {
				bad("%s: not fixable by the user, but the steps for %s do not name %s", lang, p, HelpDeskPlaceholder)
			}
		}
	}
	return errors.Join(errs...)
}

// steps is the platform's own steps, or the steps for every platform.
func (t text) steps(platform string) []string {
	if s, ok := t.Steps[platform]; ok {
		return s
	}
	return t.Steps[allPlatforms]
}

var builtin = func() *Catalog {
	c, err := Parse(catalogYAML)
	if err != nil {
		panic("remediation: the embedded catalog is invalid: " + err.Error()) // TestEmbeddedCatalog keeps it valid
	}
	return c
}()

// Default returns the catalog embedded in this package.
func Default() *Catalog { return builtin }

// Languages returns the catalog's language tags, the default first.
func (c *Catalog) Languages() []string { return slices.Clone(c.langs) }

// Codes returns every reason code the catalog has an entry for, sorted.
func (c *Catalog) Codes() []string {
	codes := make([]string, 0, len(c.reasons))
	for code := range c.reasons {
		codes = append(codes, code)
	}
	sort.Strings(codes)
	return codes
}

// Has reports whether the catalog has an entry for code.
func (c *Catalog) Has(code string) bool {
	_, ok := c.reasons[code]
	return ok
}

// Match picks the catalog language that best serves an Accept-Language header value (RFC 9110
// section 12.5.4), or the default language when nothing matches or the header is malformed or
// longer than MaxAcceptLanguage. A bare tag ("es", "es-MX") works too.
func (c *Catalog) Match(acceptLanguage string) string {
	if acceptLanguage == "" || len(acceptLanguage) > MaxAcceptLanguage {
		return c.langs[0]
	}
	tags, _, err := language.ParseAcceptLanguage(acceptLanguage)
	if err != nil || len(tags) == 0 {
		return c.langs[0]
	}
	_, i, conf := c.matcher.Match(tags...)
	if conf == language.No {
		return c.langs[0]
	}
	return c.langs[i]
}

// Request says how to render: in which language, for which platform, naming which help desk.
type Request struct {
	// Lang is a catalog language (Match's answer); another value renders the default language.
	Lang string
	// Platform is the device's platform; empty or unknown renders every platform's steps.
	Platform string
	HelpDesk HelpDesk
}

// Item renders code's remediation. A code the catalog lacks renders the generic "could not be
// checked, contact the help desk" text under its own code: never nothing.
func (c *Catalog) Item(code string, r Request) Item {
	lang := r.Lang
	if !slices.Contains(c.langs, lang) {
		lang = c.langs[0]
	}
	e, ok := c.reasons[code]
	t := e.Text[lang]
	if !ok {
		t = c.generic[lang]
	}
	contact := c.Contact(r.HelpDesk, lang)
	fill := func(steps []string) []string {
		out := make([]string, len(steps))
		for i, s := range steps {
			out[i] = strings.ReplaceAll(s, HelpDeskPlaceholder, contact)
		}
		return out
	}
	it := Item{Code: code, Lang: lang, Title: t.Title, Explanation: t.Explanation, UserFixable: ok && e.Fixable}
	if slices.Contains(Platforms, r.Platform) {
		it.Platform = r.Platform
		it.Steps = fill(t.steps(r.Platform))
	} else {
		it.StepsByPlatform = make(map[string][]string, len(Platforms))
		for _, p := range Platforms {
			it.StepsByPlatform[p] = fill(t.steps(p))
		}
	}
	if !it.UserFixable {
		it.Contact = contact
	}
	return it
}

// Items renders the remediation of each code, in order, once per code.
func (c *Catalog) Items(codes []string, r Request) []Item {
	out := make([]Item, 0, len(codes))
	for i, code := range codes {
		if slices.Contains(codes[:i], code) {
			continue
		}
		out = append(out, c.Item(code, r))
	}
	return out
}

// Contact is the help desk as steps name it in lang: its name (or the catalog's word for an
// unconfigured one), then how to reach it.
func (c *Catalog) Contact(h HelpDesk, lang string) string {
	name := h.Name
	if name == "" {
		name = c.desk[lang]
		if name == "" {
			name = c.desk[c.langs[0]]
		}
	}
	var how []string
	for _, s := range []string{h.Phone, h.Email, h.URL} {
		if s != "" {
			how = append(how, s)
		}
	}
	if len(how) == 0 {
		return name
	}
	return name + " (" + strings.Join(how, ", ") + ")"
}
