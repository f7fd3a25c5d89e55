package android

import (
	"encoding/base64"
	"encoding/json"
	"testing"
	"time"

	"google.golang.org/api/androidmanagement/v1"

	"github.com/halemdm/hale/policies"
)

// BenchmarkStatusReport is what Hale does with a STATUS_REPORT push once its token is verified:
// parse and validate the envelope and the device, and map the device to posture claims.
func BenchmarkStatusReport(b *testing.B) {
	body := pushBody(TypeStatusReport, "1234567890", []byte(sampleDevice))
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		n, err := ParseNotification(body)
		if err != nil {
			b.Fatal(err)
		}
		p := &policies.Posture{}
		postureUpdate(n.Device, now)(p)
		if p.OS == nil {
			b.Fatal("no OS claim")
		}
	}
}

// BenchmarkStatusReportDecodeBaseline is its baseline: decoding the same push into the official
// client's Device with encoding/json and nothing else, the least any consumer of the
// notification does. The ratio is what Hale's validation and posture mapping add.
func BenchmarkStatusReportDecodeBaseline(b *testing.B) {
	body := pushBody(TypeStatusReport, "1234567890", []byte(sampleDevice))
	b.ReportAllocs()
	for b.Loop() {
		var env struct {
			Message struct {
				Data string `json:"data"`
			} `json:"message"`
		}
		if err := json.Unmarshal(body, &env); err != nil {
			b.Fatal(err)
		}
		data, err := base64.StdEncoding.DecodeString(env.Message.Data)
		if err != nil {
			b.Fatal(err)
		}
		var d androidmanagement.Device
		if err := json.Unmarshal(data, &d); err != nil || d.Name == "" {
			b.Fatal(err)
		}
	}
}
