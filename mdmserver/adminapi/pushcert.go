package adminapi

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/halemdm/hale/api"
	"github.com/halemdm/hale/internal/httpjson"
	"github.com/halemdm/hale/internal/problem"
	"github.com/halemdm/hale/mdmserver/httpapi"
	"github.com/halemdm/hale/mdmserver/pushcert"
)

// maxPushCert bounds PUT /api/v1/pushcert's body: a certificate and its key, in PEM.
const maxPushCert = 64 << 10

// PushCertStore keeps the APNs push certificates (pushcert.Service).
type PushCertStore interface {
	Upload(ctx context.Context, pemCert, pemKey []byte) (*pushcert.Info, error)
	List(ctx context.Context) ([]pushcert.Info, error)
}

// PushCerts serves /api/v1/pushcert: uploading the APNs push certificate Apple devices are
// woken with, and listing what was uploaded.
type PushCerts struct {
	// Certs keeps the certificates.
	Certs PushCertStore
	// Auditor records uploads.
	Auditor httpapi.Auditor
	// Log receives internal errors.
	Log *slog.Logger
}

// Put is PUT /api/v1/pushcert: a PEM certificate followed by its PEM private key.
func (h *PushCerts) Put(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxPushCert))
	if err != nil {
		problem.Error(w, r, http.StatusRequestEntityTooLarge, "body-too-large", "a push certificate and key fit in 64 KiB")
		return
	}
	// One body holds both PEM blocks, so it is passed as both: the pair is read from it as
	// tls.X509KeyPair reads one, skipping the block it does not want.
	info, err := h.Certs.Upload(r.Context(), body, body)
	if err != nil {
		problem.BadRequest(w, r, "send the APNs push certificate PEM followed by its private key PEM: "+err.Error())
		return
	}
	_ = h.Auditor.Record(r, httpapi.Event{Action: "pushcert.upload", Target: info.Topic,
		Details: map[string]string{"not_after": info.NotAfter.Format(time.RFC3339)}})
	httpjson.Write(w, http.StatusOK, pushCertificate(*info))
}

// List is GET /api/v1/pushcert.
func (h *PushCerts) List(w http.ResponseWriter, r *http.Request) {
	infos, err := h.Certs.List(r.Context())
	if err != nil {
		httpapi.Internal(h.Log, w, r, err)
		return
	}
	out := api.PushCertificates{PushCertificates: make([]api.PushCertificate, 0, len(infos))}
	for _, info := range infos {
		out.PushCertificates = append(out.PushCertificates, pushCertificate(info))
	}
	httpjson.Write(w, http.StatusOK, out)
}

// pushCertificate is the wire form of a push certificate's description.
func pushCertificate(info pushcert.Info) api.PushCertificate {
	return api.PushCertificate{Topic: info.Topic, NotAfter: info.NotAfter, Subject: info.Subject, UploadedAt: info.UploadedAt}
}
