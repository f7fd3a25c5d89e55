// Package pushcert stores APNs push certificates for nanomdm with their private keys sealed at
// rest under Hale's master key. It replaces the push-certificate part of nanomdm's storage, which
// would keep the key in plain text.
package pushcert

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"time"

	"github.com/micromdm/nanomdm/cryptoutil"
	"github.com/micromdm/nanomdm/storage"

	"github.com/halemdm/hale/internal/seal"
)

// ErrNotFound is returned for a topic with no uploaded certificate.
var ErrNotFound = errors.New("pushcert: no push certificate for this topic; upload one with PUT /api/v1/pushcert")

// Service keeps push certificates in a Store, by APNs topic, their keys sealed under the master
// key. It is nanomdm's push certificate store.
type Service struct {
	st  Store
	key *seal.Key
}

var (
	_ storage.PushCertStore  = (*Service)(nil)
	_ storage.PushCertStorer = (*Service)(nil)
)

// Info describes a stored push certificate; it never holds the key.
type Info struct {
	Topic      string    `json:"topic"`
	NotAfter   time.Time `json:"not_after"`
	Subject    string    `json:"subject"`
	UploadedAt time.Time `json:"uploaded_at"`
}

// NewService returns a Service on st whose keys are sealed with key.
func NewService(st Store, key *seal.Key) *Service { return &Service{st: st, key: key} }

func purpose(topic string) string { return "apns/push.key/" + topic }

// Parse checks that pemCert and pemKey are a matching certificate and private key and that the
// certificate carries an APNs topic. It is what Upload does before storing, exposed so the API can
// answer a precise error.
func Parse(pemCert, pemKey []byte) (*x509.Certificate, string, error) {
	pair, err := tls.X509KeyPair(pemCert, pemKey)
	if err != nil {
		return nil, "", fmt.Errorf("certificate and key do not form a pair: %w", err)
	}
	cert, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, "", fmt.Errorf("parse certificate: %w", err)
	}
	topic, err := cryptoutil.TopicFromCert(cert)
	if err != nil || topic == "" {
		return nil, "", errors.New("the certificate has no APNs topic (UID); is it an MDM push certificate from Apple?")
	}
	return cert, topic, nil
}

// Upload stores a push certificate and returns what was stored. The write is committed before it
// returns.
func (s *Service) Upload(ctx context.Context, pemCert, pemKey []byte) (*Info, error) {
	cert, topic, err := Parse(pemCert, pemKey)
	if err != nil {
		return nil, err
	}
	certOnly := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})
	sum := sha256.Sum256(cert.Raw)
	rec := StoredCert{
		Info: Info{Topic: topic, NotAfter: cert.NotAfter.UTC(), Subject: cert.Subject.String(),
			UploadedAt: time.Now().UTC()},
		CertPEM:    certOnly,
		SealedKey:  s.key.Seal(purpose(topic), pemKey),
		StaleToken: hex.EncodeToString(sum[:8]) + "-" + time.Now().UTC().Format(time.RFC3339Nano),
	}
	err = s.st.Update(ctx, func(tx Tx) error { return tx.PushCerts().PutCert(ctx, &rec) })
	if err != nil {
		return nil, fmt.Errorf("pushcert: store: %w", err)
	}
	return &rec.Info, nil
}

// StorePushCert implements nanomdm's storage.PushCertStorer.
func (s *Service) StorePushCert(ctx context.Context, pemCert, pemKey []byte) error {
	_, err := s.Upload(ctx, pemCert, pemKey)
	return err
}

// get returns the certificate stored for topic; a missing one is ErrNotFound itself, which
// nanomdm's push service and callers compare.
func (s *Service) get(ctx context.Context, topic string) (*StoredCert, error) {
	var rec *StoredCert
	err := s.st.View(ctx, func(tx Tx) error {
		var err error
		rec, err = tx.PushCerts().Cert(ctx, topic)
		return err
	})
	if errors.Is(err, ErrNotFound) {
		return nil, ErrNotFound
	}
	return rec, err
}

// IsPushCertStale implements nanomdm's storage.PushCertStore.
func (s *Service) IsPushCertStale(ctx context.Context, topic, staleToken string) (bool, error) {
	rec, err := s.get(ctx, topic)
	if err != nil {
		return true, err
	}
	return rec.StaleToken != staleToken, nil
}

// RetrievePushCert implements nanomdm's storage.PushCertStore: it opens the sealed key.
func (s *Service) RetrievePushCert(ctx context.Context, topic string) (*tls.Certificate, string, error) {
	rec, err := s.get(ctx, topic)
	if err != nil {
		return nil, "", err
	}
	keyPEM, err := s.key.Open(purpose(topic), rec.SealedKey)
	if err != nil {
		return nil, "", fmt.Errorf("pushcert: open sealed key for %s: %w", topic, err)
	}
	pair, err := tls.X509KeyPair(rec.CertPEM, keyPEM)
	if err != nil {
		return nil, "", err
	}
	return &pair, rec.StaleToken, nil
}

// List returns every stored push certificate.
func (s *Service) List(ctx context.Context) ([]Info, error) {
	var out []Info
	err := s.st.View(ctx, func(tx Tx) error {
		certs, err := tx.PushCerts().Certs(ctx)
		for _, c := range certs {
			out = append(out, c.Info)
		}
		return err
	})
	return out, err
}
