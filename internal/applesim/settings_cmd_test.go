package applesim

import (
	"context"
	"testing"
)

// Settings with ApplicationConfiguration configures a managed app, is refused per item for an
// app MDM did not install and for an item the simulator does not know, and removes the
// configuration when Configuration is absent.
func TestSettingsApplicationConfiguration(t *testing.T) {
	h := newHarness(t, false)
	state := IOSState()
	state.ManagedApps = []string{"org.example.securetext"}
	dev := h.newDevice(t, WithState(state))
	ctx := context.Background()
	if err := dev.Enroll(ctx); err != nil {
		t.Fatal(err)
	}
	conf := map[string]any{"HaleServerURL": "https://hale.example", "HaleBindingToken": "hab_1"}
	set := h.enqueue(t, dev.UDID(), "Settings", map[string]any{"Settings": []any{
		map[string]any{"Item": "ApplicationConfiguration", "Identifier": "org.example.securetext", "Configuration": conf},
		map[string]any{"Item": "ApplicationConfiguration", "Identifier": "com.other.app", "Configuration": conf},
		map[string]any{"Item": "Bluetooth", "Enabled": true},
	}})
	if _, err := dev.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	var res struct {
		baseResult
		Settings []struct {
			Item       string
			Status     string
			ErrorChain []errorChain
		}
	}
	unmarshal(t, h.result(t, set), &res)
	if res.Status != StatusAcknowledged || len(res.Settings) != 3 || res.Settings[0].Status != StatusAcknowledged ||
		res.Settings[1].Status != StatusError || res.Settings[2].Status != StatusError || len(res.Settings[1].ErrorChain) != 1 {
		t.Fatalf("Settings result: %+v", res)
	}
	if got := dev.ManagedAppConfiguration("org.example.securetext"); got["HaleBindingToken"] != "hab_1" || got["HaleServerURL"] != "https://hale.example" {
		t.Fatalf("configuration: %v", got)
	}
	if got := dev.ManagedAppConfiguration("com.other.app"); len(got) != 0 {
		t.Fatalf("an unmanaged app was configured: %v", got)
	}
	remove := h.enqueue(t, dev.UDID(), "Settings", map[string]any{"Settings": []any{
		map[string]any{"Item": "ApplicationConfiguration", "Identifier": "org.example.securetext"},
	}})
	if _, err := dev.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	var removed baseResult
	unmarshal(t, h.result(t, remove), &removed)
	if got := dev.ManagedAppConfiguration("org.example.securetext"); len(got) != 0 || removed.Status != StatusAcknowledged {
		t.Fatalf("after removal: %v %+v", got, removed)
	}
}
