package mdmserver

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/micromdm/nanomdm/mdm"
	"github.com/micromdm/nanomdm/service/nanomdm"

	"github.com/halemdm/hale/internal/pgtest"
	"github.com/halemdm/hale/internal/seal"
	"github.com/halemdm/hale/mdmserver/audit"
	"github.com/halemdm/hale/mdmserver/storage/boltstore"
	"github.com/halemdm/hale/mdmserver/storage/kvstore"
)

// fleetDataDir makes a data directory whose bbolt file holds n Apple devices as a server leaves
// them: nanomdm's enrollment (Authenticate and TokenUpdate with an identity certificate, an
// unlock token only the storage kept), its
// certificate association and one sealed queued command; Hale's device record and posture of
// about a kilobyte each; an audit entry per device and a signed checkpoint.
func fleetDataDir(tb testing.TB, n int) string {
	tb.Helper()
	ctx := context.Background()
	dir := tb.TempDir()
	st, err := boltstore.Open(filepath.Join(dir, "hale.db"))
	if err != nil {
		tb.Fatal(err)
	}
	defer st.Close()
	key, err := seal.New(make([]byte, seal.KeySize))
	if err != nil {
		tb.Fatal(err)
	}
	mdmSt, err := boltstore.NewMDMStorage(st, boltstore.WithCommandSealer(key))
	if err != nil {
		tb.Fatal(err)
	}
	pk, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "device"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &pk.PublicKey, pk)
	if err != nil {
		tb.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	svc := nanomdm.New(mdmSt)
	record := []byte(`{"id":"x","platform":"macos","state":"enrolled","owner":"dr.grey@example.org","facts":"` + strings.Repeat("f", 900) + `"}`)
	devices, _ := st.Bucket(string(kvstore.BucketInventoryDevices))
	posture, _ := st.Bucket(string(kvstore.BucketCompliancePosture))
	for i := range n {
		udid := fmt.Sprintf("%040X", i)
		e := mdm.Enrollment{UDID: udid}
		r := mdm.NewRequestWithContext(ctx, cert)
		auth := &mdm.Authenticate{Enrollment: e, SerialNumber: fmt.Sprintf("C02%08d", i)}
		auth.MessageType.MessageType = "Authenticate"
		auth.Raw = []byte(`<?xml version="1.0"?><plist version="1.0"><dict><key>MessageType</key><string>Authenticate</string><key>UDID</key><string>` + udid + `</string><key>Topic</key><string>com.apple.mgmt.External.hale</string></dict></plist>`)
		tu := &mdm.TokenUpdate{Enrollment: e, Push: mdm.Push{PushMagic: "magic", Topic: "com.apple.mgmt.External.hale", Token: []byte(udid)}}
		tu.MessageType.MessageType = "TokenUpdate"
		tu.UnlockToken = []byte("unlock-" + udid) // kept by the storage; the raw message below lacks it
		tu.Raw = []byte(`<?xml version="1.0"?><plist version="1.0"><dict><key>MessageType</key><string>TokenUpdate</string><key>UDID</key><string>` + udid + `</string><key>Topic</key><string>com.apple.mgmt.External.hale</string><key>PushMagic</key><string>magic</string><key>Token</key><data>AAAA</data></dict></plist>`)
		if err := svc.Authenticate(r, auth); err != nil {
			tb.Fatal(err)
		}
		if err := svc.TokenUpdate(mdm.NewRequestWithContext(ctx, cert), tu); err != nil {
			tb.Fatal(err)
		}
		r.EnrollID = &mdm.EnrollID{ID: udid, Type: mdm.Device}
		if err := mdmSt.AssociateCertHash(r, fmt.Sprintf("%064x", i)); err != nil {
			tb.Fatal(err)
		}
		uuid := fmt.Sprintf("CMD-%08d", i)
		cmd := &mdm.Command{CommandUUID: uuid, Raw: []byte(`<?xml version="1.0"?><plist version="1.0"><dict><key>CommandUUID</key><string>` + uuid + `</string><key>Command</key><dict><key>RequestType</key><string>SecurityInfo</string></dict></dict></plist>`)}
		cmd.Command.RequestType = "SecurityInfo"
		if _, err := mdmSt.EnqueueCommand(ctx, []string{udid}, cmd); err != nil {
			tb.Fatal(err)
		}
		id := fmt.Sprintf("d_%016x", i)
		if err := devices.Set(ctx, id, record); err != nil {
			tb.Fatal(err)
		}
		if err := posture.Set(ctx, id, record); err != nil {
			tb.Fatal(err)
		}
	}
	skey, vkey, err := audit.GenerateKey("hale-audit")
	if err != nil {
		tb.Fatal(err)
	}
	signer, _ := audit.NewSigner(skey)
	l, err := audit.New(auditStore(st), signer)
	if err != nil {
		tb.Fatal(err)
	}
	for i := range n {
		if _, err := l.Append(ctx, audit.Entry{Actor: "system", Action: "device.enroll", Target: fmt.Sprintf("d_%016x", i), Outcome: audit.OutcomeOK}); err != nil {
			tb.Fatal(err)
		}
	}
	if _, err := l.Checkpoint(ctx); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "audit.pub"), []byte(vkey+"\n"), 0o644); err != nil {
		tb.Fatal(err)
	}
	return dir
}

// BenchmarkMigrate measures mdmserver migrate of a fleet (copy and verification, into a new
// PostgreSQL database each time) against the baseline of copying the same bbolt file with an
// fsync: the least any move of the data costs. It reports per-device times and the ratio.
func BenchmarkMigrate(b *testing.B) {
	pgtest.ServerURL(b)
	for _, n := range []int{1000} {
		b.Run(fmt.Sprintf("devices=%d", n), func(b *testing.B) {
			dir := fleetDataDir(b, n)
			ctx := context.Background()
			var migrate, copying time.Duration
			for b.Loop() {
				b.StopTimer()
				dsn := pgtest.NewDatabase(b)
				b.StartTimer()
				start := time.Now()
				res, err := Migrate(ctx, dir, dsn)
				migrate += time.Since(start)
				if err != nil || res.Devices != n || res.Queued != n {
					b.Fatalf("migrate: %v %+v", err, res)
				}
				b.Logf("apple %s, records %s, verify %s", res.AppleElapsed, res.RecordsElapsed, res.VerifyElapsed)
				start = time.Now()
				copyFile(b, filepath.Join(dir, "hale.db"), filepath.Join(b.TempDir(), "copy.db"))
				copying += time.Since(start)
			}
			b.ReportMetric(float64(migrate.Microseconds())/float64(b.N)/float64(n), "µs/device")
			b.ReportMetric(float64(copying.Microseconds())/float64(b.N)/float64(n), "copy-µs/device")
			b.ReportMetric(float64(migrate)/float64(copying), "ratio")
		})
	}
}

// copyFile copies src to dst and syncs it.
func copyFile(tb testing.TB, src, dst string) {
	in, err := os.Open(src)
	if err != nil {
		tb.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		tb.Fatal(err)
	}
	if err := out.Sync(); err != nil {
		tb.Fatal(err)
	}
	if err := out.Close(); err != nil {
		tb.Fatal(err)
	}
}
