package main

import (
	"fmt"
	mrand "math/rand/v2"
	"runtime"
	"sync"
	"time"

	"github.com/halemdm/hale/mdmserver/access"
	"github.com/halemdm/hale/policies"
)

// fill puts n realistic decisions in x (in parallel, as the server's startup load would on every
// core) and marks it loaded. It returns the device IDs, ids[i] being device i's.
func fill(x *access.Index, n int, now time.Time) []string {
	ids := make([]string, n)
	workers := runtime.GOMAXPROCS(0)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := mrand.New(mrand.NewPCG(uint64(w), 0x68616c65))
			for i := w; i < n; i += workers {
				d := decision(rng, deviceID(i), now)
				ids[i] = d.DeviceID
				x.Put(d, now)
			}
		}()
	}
	wg.Wait()
	x.MarkLoaded()
	return ids
}

// deviceID returns device i's ID in inventory.NewID's form ("d_" and 16 hex digits). The
// splitmix64 finalizer is a bijection, so IDs are unique and spread like random ones.
func deviceID(i int) string {
	z := uint64(i) + 0x9e3779b97f4a7c15
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	z ^= z >> 31
	return fmt.Sprintf("d_%016x", z)
}

// decision is a device as the compliance engine would index it: reported in the last 15
// minutes, about 90% compliant; of the rest half still within the grace period (allowed, with
// reasons) and half past it (denied).
func decision(rng *mrand.Rand, id string, now time.Time) *access.Decision {
	reported := now.Add(-time.Duration(rng.Int64N(int64(15 * time.Minute)))).UTC()
	p := posture(rng, reported)
	v := policies.Verdict{Compliant: true, Reasons: []policies.Reason{}, EvaluatedAt: reported, PolicyName: "clinical", PolicyVersion: 3}
	if rng.IntN(10) == 0 {
		v.Compliant = false
		v.Reasons = breakPosture(rng, p)
		v.NoncompliantSince = reported.Add(-time.Duration(rng.Int64N(int64(96 * time.Hour))))
		if rng.IntN(2) == 0 {
			v.GraceUntil = now.Add(time.Duration(1+rng.Int64N(48)) * time.Hour).UTC()
		} else {
			v.GraceUntil = now.Add(-time.Duration(1+rng.Int64N(48)) * time.Hour).UTC()
		}
	}
	serial := make([]byte, 16)
	for i := range serial {
		serial[i] = byte(rng.Uint32())
	}
	return &access.Decision{
		DeviceID: id, State: "active", Verdict: v, Posture: p,
		ReportedAt: reported, StaleAt: reported.Add(policies.DefaultReportMaxAge),
		CertSerials: []string{fmt.Sprintf("%x", serial)},
	}
}

// posture is a compliant posture of a random platform with the claims its reporter sends: the
// MDM protocol for iOS and iPadOS, MDM and the agent for macOS, the agent elsewhere.
func posture(rng *mrand.Rand, at time.Time) *policies.Posture {
	mdm, agent := policies.ProvenanceMDM, policies.ProvenanceAgent
	seen := func() time.Time { return at.Add(-time.Duration(rng.Int64N(int64(time.Minute)))) }
	yes := func(src policies.Provenance) *policies.Claim[bool] { return policies.Observe(true, src, seen()) }
	no := func(src policies.Provenance) *policies.Claim[bool] { return policies.Observe(false, src, seen()) }
	p := &policies.Posture{ReportedAt: at}
	switch k := rng.IntN(100); {
	case k < 40:
		p.Platform = policies.PlatformIOS
		if k < 5 {
			p.Platform = policies.PlatformIPadOS
		}
		p.OS = policies.Observe(policies.OSInfo{Version: pick(rng, "17.5.1", "17.6", "18.0.1", "18.1"), Build: pick(rng, "21F90", "21G80", "22A3370", "22B83")}, mdm, seen())
		p.Supervised = yes(mdm)
		p.DiskEncrypted = yes(mdm)
		p.PasscodePresent = yes(mdm)
		p.PasscodeCompliant = yes(mdm)
		p.Restrictions = policies.Observe(map[string]bool{"allowScreenShot": false, "allowCloudBackup": false, "allowLockScreenNotificationsView": false}, mdm, seen())
	case k < 65:
		p.Platform = policies.PlatformMacOS
		p.OS = policies.Observe(policies.OSInfo{Version: pick(rng, "14.5", "14.6.1", "15.0", "15.1"), Build: pick(rng, "23F79", "23G93", "24A335", "24B83")}, mdm, seen())
		p.DiskEncrypted = yes(mdm)
		p.SIPEnabled = yes(mdm)
		p.PasscodePresent = yes(agent)
		p.ScreenLockEnabled = yes(agent)
		p.ScreenLockTimeout = policies.Observe(policies.Duration(5*time.Minute), agent, seen())
		p.FirewallEnabled = yes(agent)
		p.GatekeeperActive = yes(agent)
		p.AgentTampered = no(agent)
	case k < 90:
		p.Platform = policies.PlatformWindows
		p.OS = policies.Observe(policies.OSInfo{Version: "10.0.22631", Build: pick(rng, "22631.3447", "22631.4037", "22631.4317")}, agent, seen())
		p.DiskEncrypted = yes(agent)
		p.PasscodePresent = yes(agent)
		p.ScreenLockEnabled = yes(agent)
		p.ScreenLockTimeout = policies.Observe(policies.Duration(10*time.Minute), agent, seen())
		p.SecureBoot = yes(agent)
		p.FirewallEnabled = yes(agent)
		p.AgentTampered = no(agent)
		p.PendingSecurity = policies.Observe(0, agent, seen())
		p.RebootRequired = no(agent)
	default:
		p.Platform = policies.PlatformLinux
		p.OS = policies.Observe(policies.OSInfo{Version: pick(rng, "22.04", "24.04"), Distribution: "ubuntu", Kernel: pick(rng, "6.5.0-41-generic", "6.8.0-45-generic")}, agent, seen())
		p.DiskEncrypted = yes(agent)
		p.SwapEncrypted = yes(agent)
		p.PasscodePresent = yes(agent)
		p.ScreenLockEnabled = yes(agent)
		p.ScreenLockTimeout = policies.Observe(policies.Duration(5*time.Minute), agent, seen())
		p.SecureBoot = yes(agent)
		p.FirewallEnabled = yes(agent)
		p.KernelLockdown = policies.Observe("integrity", agent, seen())
		p.KernelTainted = no(agent)
		p.AgentTampered = no(agent)
		p.PendingSecurity = policies.Observe(0, agent, seen())
		p.RebootRequired = no(agent)
	}
	return p
}

// breakPosture makes p noncompliant in one of the usual ways and returns the policy's reasons.
func breakPosture(rng *mrand.Rand, p *policies.Posture) []policies.Reason {
	switch rng.IntN(3) {
	case 0:
		p.OS.Value.Version = "13.6"
		return []policies.Reason{{Code: policies.CodeOSTooOld, Detail: "OS version 13.6 is below the policy's minimum"}}
	case 1:
		p.DiskEncrypted.Value = false
		return []policies.Reason{{Code: policies.CodeEncryptionOff, Detail: "disk encryption is off"}}
	}
	if p.ScreenLockTimeout != nil {
		p.ScreenLockTimeout.Value = policies.Duration(30 * time.Minute)
		return []policies.Reason{{Code: policies.CodeScreenLockTimeoutTooLong, Detail: "the screen locks after 30m0s; the policy allows at most 15m0s"}}
	}
	p.PasscodePresent.Value = false
	p.PasscodeCompliant.Value = false
	return []policies.Reason{
		{Code: policies.CodePasscodeMissing, Detail: "no device passcode is set"},
		{Code: policies.CodePasscodeNoncompliant, Detail: "the passcode does not meet the installed policy"},
	}
}

func pick(rng *mrand.Rand, xs ...string) string { return xs[rng.IntN(len(xs))] }
