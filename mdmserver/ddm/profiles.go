package ddm

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"strings"

	"github.com/halemdm/hale/internal/problem"
	"github.com/halemdm/hale/policies"
)

// ProfilePath is the route of the profiles legacy declarations point at (Apple requires the MDM
// server to host them). The URL names the device, the profile kind and a hash of the profile's
// content, and carries a MAC over them under a key only the server has, so it can be neither
// guessed nor pointed at another device's profile; a profile that changed since is gone (404)
// and the device fetches the new declaration's URL.
const ProfilePath = "GET /ddm/profiles/{device}/{kind}/{hash}/{mac}"

// profileURL is where the legacy declaration of device's profile p points.
func (s *Service) profileURL(device string, p policies.Profile) string {
	h := contentHash(p.Bytes)
	return strings.TrimSuffix(s.d.PublicURL, "/") + "/ddm/profiles/" + device + "/" + p.Kind + "/" + h + "/" + s.mac(device, p.Kind, h)
}

func contentHash(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:16])
}

func (s *Service) mac(device, kind, hash string) string {
	m := hmac.New(sha256.New, s.d.URLKey)
	m.Write([]byte(device + "\x00" + kind + "\x00" + hash))
	return hex.EncodeToString(m.Sum(nil)[:16])
}

// ServeProfile serves ProfilePath: the current signed profile the URL names.
func (s *Service) ServeProfile(w http.ResponseWriter, r *http.Request) {
	device, kind, hash, mac := r.PathValue("device"), r.PathValue("kind"), r.PathValue("hash"), r.PathValue("mac")
	want := s.mac(device, kind, hash)
	if len(mac) != len(want) || !hmac.Equal([]byte(mac), []byte(want)) {
		problem.Error(w, r, http.StatusNotFound, "not-found", "no such profile")
		return
	}
	d, err := s.d.Devices.Get(r.Context(), device)
	if err != nil || d.State.Ended() {
		problem.Error(w, r, http.StatusNotFound, "not-found", "no such profile")
		return
	}
	set, err := s.Declarations(d)
	if err != nil {
		s.log.ErrorContext(r.Context(), "rendering declarations for a profile download", "device_id", d.ID, "err", err)
		problem.Error(w, r, http.StatusInternalServerError, "internal", "the profile could not be rendered")
		return
	}
	for _, p := range set.Profiles {
		if p.Kind != kind || contentHash(p.Bytes) != hash {
			continue
		}
		signed, err := s.d.Signer.Sign(p.Bytes)
		if err != nil {
			s.log.ErrorContext(r.Context(), "signing a legacy profile", "device_id", d.ID, "err", err)
			problem.Error(w, r, http.StatusInternalServerError, "internal", "the profile could not be signed")
			return
		}
		w.Header().Set("Content-Type", "application/x-apple-aspen-config")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write(signed)
		return
	}
	problem.Error(w, r, http.StatusNotFound, "not-found", "the profile changed since this URL was handed out; sync declarations again")
}
