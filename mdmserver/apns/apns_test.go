package apns

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

func TestRewriter(t *testing.T) {
	var got []string
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got = append(got, r.Host+r.URL.Path) })
	target := httptest.NewServer(h)
	defer target.Close()
	other := httptest.NewServer(h)
	defer other.Close()

	tu, _ := url.Parse(target.URL + "/prefix/")
	c := &http.Client{Transport: &Rewriter{Target: tu, Hosts: APNsHosts}}
	for _, u := range []string{
		"http://api.push.apple.com:443/3/device/aa",
		"http://API.development.push.apple.com/3/device/bb",
		other.URL + "/untouched",
	} {
		resp, err := c.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	tHost := strings.TrimPrefix(target.URL, "http://")
	oHost := strings.TrimPrefix(other.URL, "http://")
	want := []string{tHost + "/prefix/3/device/aa", tHost + "/prefix/3/device/bb", oHost + "/untouched"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("requests %v, want %v", got, want)
	}

	noTarget := &http.Client{Transport: &Rewriter{Hosts: APNsHosts}}
	if _, err := noTarget.Get("https://api.push.apple.com/3/device/aa"); err == nil {
		t.Error("rewriter without target did not fail")
	}
}

func TestNewClientFuncValidates(t *testing.T) {
	for _, bad := range []string{"http://plain.example", "not a url", "https://"} {
		if _, err := NewClientFunc(bad); err == nil {
			t.Errorf("base URL %q accepted", bad)
		}
	}
	f, err := NewClientFunc("")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f(nil); err == nil {
		t.Error("client without a push certificate")
	}
}
