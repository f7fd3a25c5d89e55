// Command ddmstatus measures how soon a messaging backend's access answer follows a passcode
// that stops protecting an iPhone on declarative management: from the moment the device starts
// sending its status report (passcode.is-present false, unasked: no command from the server)
// to the moment GET /access/v1/devices/{id} answers allow:false. The server is the real one, in
// process, with apple_ddm on and the HIPAA example assigned; the devices are internal/applesim
// iPhones enrolled over SCEP that synced their declarations. The status report's own round trip
// is measured beside it as the baseline. Goal: p99 under one second.
//
//	go run ./bench/ddmstatus [-devices 20] [-flips 200]
package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/halemdm/hale/internal/apitest"
	"github.com/halemdm/hale/internal/applesim"
	"github.com/halemdm/hale/internal/fakeapns"
	"github.com/halemdm/hale/internal/measure"
	"github.com/halemdm/hale/mdmserver"
)

var tb = measure.Harness{Name: "ddmstatus"}

func main() {
	devices := flag.Int("devices", 20, "iPhones to enroll")
	flips := flag.Int("flips", 200, "passcode removals to time (each is restored after)")
	flag.Parse()
	r, err := run(os.Stdout, *devices, *flips)
	if err != nil {
		fmt.Fprintln(os.Stderr, "ddmstatus:", err)
		os.Exit(1)
	}
	report(os.Stdout, r)
}

type result struct {
	report, flip measure.Summary
}

type server struct {
	url    string
	client *http.Client
	admin  string
}

func (s *server) call(method, path, token string, body, out any) int {
	return apitest.Do(tb, s.client, method, s.url+path, token, body, out)
}

func (s *server) token(role string) string {
	var tok struct{ Token string }
	if code := s.call("POST", "/api/v1/tokens", s.admin, map[string]string{"name": role, "role": role}, &tok); code != http.StatusCreated {
		tb.Fatalf("create %s token: %d", role, code)
	}
	return tok.Token
}

// allow asks the access API whether id may open a session.
func (s *server) allow(token, id string) bool {
	var a struct{ Allow bool }
	if code := s.call("GET", "/access/v1/devices/"+id, token, nil, &a); code != http.StatusOK {
		tb.Fatalf("access %s: %d", id, code)
	}
	return a.Allow
}

func run(log io.Writer, n, flips int) (result, error) {
	dir, err := os.MkdirTemp("", "hale-bench-ddmstatus")
	if err != nil {
		return result{}, err
	}
	defer os.RemoveAll(dir)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return result{}, err
	}
	cfg := mdmserver.Defaults()
	cfg.Listen, cfg.DataDir, cfg.AppleDDM = ln.Addr().String(), filepath.Join(dir, "data"), true
	cfg.EnrollBurst = 2 * n // every device enrolls (profile, SCEP) from this one address
	// Pushes go to a fake APNs on loopback; the devices poll by themselves (no push loop, so
	// that the status reports timed are the ones this harness sends).
	apns := fakeapns.New()
	defer apns.Close()
	cfg.APNsURL = apns.URL()
	srv, err := mdmserver.New(cfg, mdmserver.WithLogger(slog.New(slog.DiscardHandler)), mdmserver.WithAPNsRootCAs(apns.CertPool()))
	if err != nil {
		return result{}, err
	}
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, ln) }()
	defer func() { cancel(); <-served }()
	admin, err := os.ReadFile(srv.AdminTokenPath())
	if err != nil {
		return result{}, err
	}
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: srv.RootCAs()}}}
	s := &server{url: "https://" + ln.Addr().String(), client: client, admin: strings.TrimSpace(string(admin))}

	certPEM, keyPEM, err := fakeapns.GeneratePushCert(applesim.DefaultTopic, 24*time.Hour)
	if err != nil {
		return result{}, err
	}
	if code := s.call("PUT", "/api/v1/pushcert", s.admin, string(append(certPEM, keyPEM...)), nil); code != http.StatusOK {
		return result{}, fmt.Errorf("upload push certificate: %d", code)
	}
	it, access := s.token("it"), s.token("access")
	doc, err := os.ReadFile(filepath.Join("examples", "policies", "hipaa-texting.yaml"))
	if err != nil {
		return result{}, fmt.Errorf("run from the repository root: %w", err)
	}
	if code := s.call("PUT", "/api/v1/policies/hipaa", it, doc, nil); code != http.StatusOK {
		return result{}, fmt.Errorf("apply the HIPAA example: %d", code)
	}
	s.call("PUT", "/api/v1/assignments", it, `{"target":{"kind":"default"},"policy":"hipaa"}`, nil)

	phones := make([]*applesim.Device, n)
	ids := make([]string, n)
	for i := range phones {
		var e struct {
			ProfileURL string `json:"profile_url"`
		}
		if code := s.call("POST", "/api/v1/enrollments", it, `{"owner":"bench","group":"ward","platform":"apple","ttl":"1h"}`, &e); code != http.StatusCreated {
			return result{}, fmt.Errorf("create enrollment: %d", code)
		}
		resp, err := client.Get(e.ProfileURL) // https://localhost:port, which the server certificate names
		if err != nil {
			return result{}, err
		}
		profile, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			return result{}, fmt.Errorf("enrollment profile: %d %s %v", resp.StatusCode, profile, err)
		}
		dev, err := applesim.EnrollFromProfile(ctx, client, profile, applesim.WithState(applesim.IOSState()))
		if err != nil {
			return result{}, fmt.Errorf("SCEP enrollment: %w", err)
		}
		if err := dev.Enroll(ctx); err != nil {
			return result{}, err
		}
		// No APNs here: the device polls by itself until it has synced its declarations.
		for deadline := time.Now().Add(30 * time.Second); len(dev.State().DDM.Declarations) == 0; {
			if time.Now().After(deadline) {
				return result{}, fmt.Errorf("device %d never synced its declarations", i)
			}
			if _, err := dev.Poll(ctx); err != nil {
				return result{}, err
			}
			time.Sleep(20 * time.Millisecond)
		}
		phones[i], ids[i] = dev, dev.Certificate().Subject.CommonName
		if !waitAllow(s, access, ids[i], true) {
			return result{}, fmt.Errorf("device %s never allowed", ids[i])
		}
	}
	fmt.Fprintf(log, "%d iPhones on declarative management, compliant under the HIPAA example; %d passcode removals\n", n, flips)

	var reportLat, flipLat []time.Duration
	for i := range flips {
		dev, id := phones[i%n], ids[i%n]
		dev.SetPasscodePresent(false)
		start := time.Now()
		if sent, err := dev.ReportStatus(ctx, false); err != nil || !sent {
			return result{}, fmt.Errorf("status report: sent=%v %v", sent, err)
		}
		reportLat = append(reportLat, time.Since(start))
		if !waitAllow(s, access, id, false) {
			return result{}, fmt.Errorf("device %s never denied", id)
		}
		flipLat = append(flipLat, time.Since(start))
		dev.SetPasscodePresent(true)
		if _, err := dev.ReportStatus(ctx, false); err != nil {
			return result{}, err
		}
		if !waitAllow(s, access, id, true) {
			return result{}, fmt.Errorf("device %s never allowed again", id)
		}
	}
	return result{report: measure.Summarize(reportLat), flip: measure.Summarize(flipLat)}, nil
}

// waitAllow asks until the answer is want, for at most 10 s.
func waitAllow(s *server, token, id string, want bool) bool {
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		if s.allow(token, id) == want {
			return true
		}
	}
	return false
}

func report(w io.Writer, r result) {
	fmt.Fprintf(w, "%-30s %7s %9s %9s %9s\n", "measure", "samples", "p50 ms", "p99 ms", "max ms")
	for _, row := range []struct {
		name string
		s    measure.Summary
	}{{"status report (baseline)", r.report}, {"status report -> access deny", r.flip}} {
		fmt.Fprintf(w, "%-30s %7d %9.2f %9.2f %9.2f\n", row.name, row.s.N,
			measure.Millis(row.s.P50), measure.Millis(row.s.P99), measure.Millis(row.s.Max))
	}
	verdict := "PASS"
	if r.flip.P99 >= time.Second {
		verdict = "MISS"
	}
	fmt.Fprintf(w, "flip p99 / report p99: %.2fx; goal p99 < 1000 ms: %s\n",
		float64(r.flip.P99)/float64(max(r.report.P99, 1)), verdict)
}
