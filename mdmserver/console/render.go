package console

import (
	"bytes"
	"fmt"
	"html/template"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/halemdm/hale/mdmserver/tokens"
)

// pageNames are the templates with a page of their own; each is parsed with layout.html.
var pageNames = []string{"signin", "signedin", "error", "overview", "devices", "device", "approvals", "audit", "policies", "policy", "enrollments", "drill"}

// funcs are the templates' helpers: formatting only, no logic.
var funcs = template.FuncMap{
	"when": func(t time.Time) string {
		if t.IsZero() {
			return "—"
		}
		return t.UTC().Format("2006-01-02 15:04:05Z")
	},
	"pct": func(n, of int) string {
		if of == 0 {
			return "—"
		}
		return fmt.Sprintf("%.1f%%", 100*float64(n)/float64(of))
	},
	"join": strings.Join,
	// idem is a fresh one-time key for a form: its Idempotency-Key.
	"idem": randomToken,
}

func parsePages() (map[string]*template.Template, error) {
	pages := map[string]*template.Template{}
	for _, name := range pageNames {
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("console: template %s: %w", name, err)
		}
		pages[name] = t
	}
	return pages, nil
}

// navItem is a link of the navigation bar, shown only to roles that may follow it.
type navItem struct {
	Href, Label string
	Current     bool
}

// layout is what every page's frame shows.
type layout struct {
	Title     string
	Person    string
	Role      string
	CSRF      string
	Nav       []navItem
	Flash     string
	FlashKind string
	SignedIn  bool
	// OIDC shows the sign-in provider's button; Refresh moves the page on to this URL.
	OIDC    bool
	Refresh string
	Data    any
}

// nav lists the pages t may open.
func (c *Console) nav(t *tokens.Token, current string) []navItem {
	items := []struct{ href, label, api string }{
		{Prefix, "Fleet", "GET /api/v1/devices"},
		{Prefix + "devices", "Devices", "GET /api/v1/devices"},
		{Prefix + "approvals", "Approvals", "GET /api/v1/approvals"},
		{Prefix + "policies", "Policies", "GET /api/v1/policies"},
		{Prefix + "enrollments", "Enrollments", "GET /api/v1/enrollments"},
		{Prefix + "audit", "Audit", "GET /api/v1/audit"},
	}
	var out []navItem
	for _, it := range items {
		if c.may(t, it.api) {
			out = append(out, navItem{Href: it.href, Label: it.label, Current: it.label == current})
		}
	}
	return out
}

// render writes page with data in the frame of ss (nil: signed out). A page that fails to
// render answers 500 without a half-written body.
func (c *Console) render(w http.ResponseWriter, r *http.Request, status int, page string, ss *session, data any) {
	c.renderTitled(w, r, status, page, "", ss, data)
}

func (c *Console) renderTitled(w http.ResponseWriter, r *http.Request, status int, page, title string, ss *session, data any) {
	l := layout{Title: title, Data: data, OIDC: c.oidc != nil}
	if page == "signedin" {
		l.Refresh, _ = data.(string)
	}
	if ss != nil {
		t := tokens.FromContext(r.Context())
		l.SignedIn, l.CSRF = true, ss.csrf
		if t != nil {
			l.Person, l.Role = t.Person, string(t.Role)
			l.Nav = c.nav(t, title)
		}
		l.FlashKind, l.Flash = c.sessions.takeFlash(r.Context(), ss)
	}
	c.execute(w, status, page, "layout.html", l)
}

// buffers are reused page buffers: a device list page is tens of kilobytes.
var buffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// execute renders the named template of page into a buffer, then writes it.
func (c *Console) execute(w http.ResponseWriter, status int, page, name string, data any) {
	buf := buffers.Get().(*bytes.Buffer)
	buf.Reset()
	defer buffers.Put(buf)
	if err := c.pages[page].ExecuteTemplate(buf, name, data); err != nil {
		c.log.Error("console: render failed", "page", page, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// errorPage answers status with a message in the console's frame.
func (c *Console) errorPage(w http.ResponseWriter, r *http.Request, ss *session, status int, msg string) {
	c.renderTitled(w, r, status, "error", http.StatusText(status), ss, msg)
}

// notFound answers a console path no route has.
func (c *Console) notFound(w http.ResponseWriter, r *http.Request) {
	ss, t, _ := c.current(r)
	if ss != nil {
		r = r.WithContext(tokens.WithToken(r.Context(), t))
	}
	c.errorPage(w, r, ss, http.StatusNotFound, "There is no such page.")
}

// flashAndRedirect leaves msg for the next page and sends the browser there (POST, redirect,
// GET: a reload does not repeat the action).
func (c *Console) flashAndRedirect(w http.ResponseWriter, r *http.Request, ss *session, kind, msg, to string) {
	c.sessions.setFlash(r.Context(), ss, kind, msg)
	http.Redirect(w, r, to, http.StatusSeeOther)
}
