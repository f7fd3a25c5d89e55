package pushcert

import "context"

// StoredCert is one push certificate as the store keeps it: the private key only sealed.
type StoredCert struct {
	Info
	// CertPEM is the certificate alone, PEM-encoded.
	CertPEM []byte
	// SealedKey is the PEM private key sealed under the master key for this topic.
	SealedKey []byte
	// StaleToken changes whenever the certificate for the topic is replaced, so nanomdm's push
	// service drops its cached APNs client.
	StaleToken string
}

// Repository keeps push certificates by APNs topic. It only stores and reads: parsing,
// sealing and the stale token are the Service's business.
//
// A Repository belongs to one transaction of its backend. Certificates it returns are the
// caller's own copies.
type Repository interface {
	// Cert returns the certificate stored for topic, or ErrNotFound.
	Cert(ctx context.Context, topic string) (*StoredCert, error)
	// PutCert stores c under its Topic, replacing what was there.
	PutCert(ctx context.Context, c *StoredCert) error
	// Certs returns every stored certificate, in topic order.
	Certs(ctx context.Context) ([]StoredCert, error)
}

// Tx is what the Service needs of a unit of work: its repository.
type Tx interface {
	PushCerts() Repository
}

// Store runs the Service's units of work (storage.Scope(st, func(tx storage.Tx) pushcert.Tx {
// return tx }) is one).
type Store interface {
	// View runs fn on one consistent snapshot.
	View(ctx context.Context, fn func(Tx) error) error
	// Update runs fn in one read-write transaction that commits when fn returns nil.
	Update(ctx context.Context, fn func(Tx) error) error
}
