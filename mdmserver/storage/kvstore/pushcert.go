package kvstore

import (
	"context"
	"encoding/json"

	"github.com/halemdm/hale/mdmserver/pushcert"
)

// BucketPushCerts holds APNs topic → pushCertRecord JSON.
var BucketPushCerts = []byte("push_certs")

// pushCertsBuckets are the buckets of the push certificates.
var pushCertsBuckets = [][]byte{BucketPushCerts}

// pushCertRecord is a push certificate as stored: Info's fields inline, then the certificate,
// the sealed key and the stale token.
type pushCertRecord struct {
	pushcert.Info
	CertPEM    []byte `json:"cert_pem"`
	SealedKey  []byte `json:"sealed_key"`
	StaleToken string `json:"stale_token"`
}

// PushCerts returns the push certificates of this transaction.
func (t *tx) PushCerts() pushcert.Repository { return pushCertsRepo{t} }

// pushCertsRepo is pushcert.Repository on one key-value transaction.
type pushCertsRepo struct{ t *tx }

func decodePushCert(v []byte) (pushcert.StoredCert, error) {
	var rec pushCertRecord
	// json.Unmarshal copies: nothing decoded points into the transaction's memory.
	if err := json.Unmarshal(v, &rec); err != nil {
		return pushcert.StoredCert{}, err
	}
	return pushcert.StoredCert{Info: rec.Info, CertPEM: rec.CertPEM, SealedKey: rec.SealedKey, StaleToken: rec.StaleToken}, nil
}

// Cert returns the certificate stored for topic.
func (r pushCertsRepo) Cert(ctx context.Context, topic string) (*pushcert.StoredCert, error) {
	b, err := bucket(r.t.tx, BucketPushCerts)
	if err != nil {
		return nil, err
	}
	v := b.Get([]byte(topic))
	if v == nil {
		return nil, pushcert.ErrNotFound
	}
	c, err := decodePushCert(v)
	if err != nil {
		return nil, err
	}
	return &c, nil
}

// PutCert stores c under its topic.
func (r pushCertsRepo) PutCert(ctx context.Context, c *pushcert.StoredCert) error {
	v, err := json.Marshal(pushCertRecord{Info: c.Info, CertPEM: c.CertPEM, SealedKey: c.SealedKey, StaleToken: c.StaleToken})
	if err != nil {
		return err
	}
	b, err := bucket(r.t.tx, BucketPushCerts)
	if err != nil {
		return err
	}
	return b.Put([]byte(c.Topic), v)
}

// Certs returns every stored certificate in topic order.
func (r pushCertsRepo) Certs(ctx context.Context) ([]pushcert.StoredCert, error) {
	b, err := bucket(r.t.tx, BucketPushCerts)
	if err != nil {
		return nil, err
	}
	var out []pushcert.StoredCert
	err = b.ForEach(func(_, v []byte) error {
		c, err := decodePushCert(v)
		if err != nil {
			return err
		}
		out = append(out, c)
		return nil
	})
	return out, err
}
