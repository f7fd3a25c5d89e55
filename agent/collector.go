package agent

import (
	"context"
	"os"
	"runtime"
	"strings"

	"github.com/halemdm/hale/agent/collect"
	"github.com/halemdm/hale/internal/buildinfo"
	"github.com/halemdm/hale/policies"
)

// HostCollector returns the Collector of the running machine: package collect's collectors
// for this platform, with opts (state dir, root) applied.
func HostCollector(opts ...collect.Option) Collector {
	return func(ctx context.Context) (*policies.Posture, []CollectorError) {
		p, errs := collect.Collect(ctx, opts...)
		out := make([]CollectorError, 0, len(errs))
		for _, e := range errs {
			out = append(out, CollectorError{Collector: e.Collector, Error: e.Err.Error()})
		}
		return p, out
	}
}

// HostFacts derives enrollment facts from a collected posture and the running host.
func HostFacts(p *policies.Posture) Facts {
	hostname, _ := os.Hostname()
	f := Facts{Hostname: hostname, Serial: hostSerial(), AgentVersion: buildinfo.String()}
	if p != nil {
		f.Platform = string(p.Platform)
		f.OS = string(p.Platform)
		if p.OS != nil {
			f.OSVersion = p.OS.Value.Version
		}
	}
	return f
}

// hostSerial reads the hardware serial number where it is a file (Linux DMI); elsewhere the
// server identifies the device by its certificate alone.
func hostSerial() string {
	if runtime.GOOS != "linux" {
		return ""
	}
	b, err := os.ReadFile("/sys/class/dmi/id/product_serial")
	if err != nil || len(b) > 256 {
		return ""
	}
	return strings.TrimSpace(string(b))
}
