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
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"time"

	"github.com/micromdm/nanomdm/cryptoutil"
	"github.com/micromdm/nanomdm/storage"
	"go.etcd.io/bbolt"

	"github.com/halemdm/hale/internal/seal"
)

var bucket = []byte("push_certs")

// ErrNotFound is returned for a topic with no uploaded certificate.
var ErrNotFound = errors.New("pushcert: no push certificate for this topic; upload one with PUT /api/v1/pushcert")

// Store keeps push certificates in a bbolt bucket, keyed by APNs topic.
type Store struct {
	db  *bbolt.DB
	key *seal.Key
}

var (
	_ storage.PushCertStore  = (*Store)(nil)
	_ storage.PushCertStorer = (*Store)(nil)
)

// Info describes a stored push certificate; it never holds the key.
type Info struct {
	Topic      string    `json:"topic"`
	NotAfter   time.Time `json:"not_after"`
	Subject    string    `json:"subject"`
	UploadedAt time.Time `json:"uploaded_at"`
}

type record struct {
	Info
	CertPEM   []byte `json:"cert_pem"`
	SealedKey []byte `json:"sealed_key"`
	// StaleToken changes whenever the certificate for the topic is replaced, so nanomdm's push
	// service drops its cached APNs client.
	StaleToken string `json:"stale_token"`
}

// New returns a Store on db whose keys are sealed with key.
func New(db *bbolt.DB, key *seal.Key) (*Store, error) {
	err := db.Update(func(tx *bbolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucket)
		return err
	})
	return &Store{db: db, key: key}, err
}

func purpose(topic string) string { return "apns/push.key/" + topic }

// Parse checks that pemCert and pemKey are a matching certificate and private key and that the
// certificate carries an APNs topic. It is what Store does before storing, exposed so the API can
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
func (s *Store) Upload(ctx context.Context, pemCert, pemKey []byte) (*Info, error) {
	cert, topic, err := Parse(pemCert, pemKey)
	if err != nil {
		return nil, err
	}
	certOnly := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})
	sum := sha256.Sum256(cert.Raw)
	rec := record{
		Info: Info{Topic: topic, NotAfter: cert.NotAfter.UTC(), Subject: cert.Subject.String(),
			UploadedAt: time.Now().UTC()},
		CertPEM:    certOnly,
		SealedKey:  s.key.Seal(purpose(topic), pemKey),
		StaleToken: hex.EncodeToString(sum[:8]) + "-" + time.Now().UTC().Format(time.RFC3339Nano),
	}
	v, err := json.Marshal(rec)
	if err != nil {
		return nil, err
	}
	err = s.db.Update(func(tx *bbolt.Tx) error { return tx.Bucket(bucket).Put([]byte(topic), v) })
	if err != nil {
		return nil, fmt.Errorf("pushcert: store: %w", err)
	}
	return &rec.Info, nil
}

// StorePushCert implements nanomdm's storage.PushCertStorer.
func (s *Store) StorePushCert(ctx context.Context, pemCert, pemKey []byte) error {
	_, err := s.Upload(ctx, pemCert, pemKey)
	return err
}

func (s *Store) get(topic string) (*record, error) {
	var rec *record
	err := s.db.View(func(tx *bbolt.Tx) error {
		v := tx.Bucket(bucket).Get([]byte(topic))
		if v == nil {
			return ErrNotFound
		}
		rec = new(record)
		return json.Unmarshal(v, rec)
	})
	return rec, err
}

// IsPushCertStale implements nanomdm's storage.PushCertStore.
func (s *Store) IsPushCertStale(ctx context.Context, topic, staleToken string) (bool, error) {
	rec, err := s.get(topic)
	if err != nil {
		return true, err
	}
	return rec.StaleToken != staleToken, nil
}

// RetrievePushCert implements nanomdm's storage.PushCertStore: it opens the sealed key.
func (s *Store) RetrievePushCert(ctx context.Context, topic string) (*tls.Certificate, string, error) {
	rec, err := s.get(topic)
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
func (s *Store) List(ctx context.Context) ([]Info, error) {
	var out []Info
	err := s.db.View(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucket).ForEach(func(_, v []byte) error {
			var rec record
			if err := json.Unmarshal(v, &rec); err != nil {
				return err
			}
			out = append(out, rec.Info)
			return nil
		})
	})
	return out, err
}
