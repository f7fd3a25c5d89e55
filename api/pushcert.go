package api

import "time"

// PushCertificate is an uploaded APNs push certificate: the answer to PUT /api/v1/pushcert and
// an entry of GET /api/v1/pushcert. The body of the PUT is not JSON but the PEM certificate
// followed by its PEM private key.
type PushCertificate struct {
	// Topic is the APNs topic the certificate pushes to (its UID).
	Topic      string    `json:"topic"`
	NotAfter   time.Time `json:"not_after"`
	Subject    string    `json:"subject"`
	UploadedAt time.Time `json:"uploaded_at"`
}

// PushCertificates is the answer to GET /api/v1/pushcert.
type PushCertificates struct {
	PushCertificates []PushCertificate `json:"push_certificates"`
}
