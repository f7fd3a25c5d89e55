package kvstore

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/halemdm/hale/mdmserver/approvals"
)

// BucketApprovals holds the two-person approval requests: id -> storedApproval JSON.
var BucketApprovals = []byte("approvals")

var approvalsBuckets = [][]byte{BucketApprovals}

// Approvals returns the two-person rule's requests in this transaction.
func (t *tx) Approvals() approvals.Repository { return approvalsRepo{t} }

// approvalsRepo is approvals.Repository on the approvals bucket.
type approvalsRepo struct{ t *tx }

// storedApproval is a request as kept on disk: Params is no part of the request's JSON in the
// API, but it is stored, under "params".
type storedApproval struct {
	approvals.Request
	Params []byte `json:"params,omitempty"`
}

func (r approvalsRepo) Get(ctx context.Context, id string) (*approvals.Request, error) {
	b, err := bucket(r.t.tx, BucketApprovals)
	if err != nil {
		return nil, err
	}
	v := b.Get([]byte(id))
	if v == nil {
		return nil, fmt.Errorf("%w: %s", approvals.ErrNotFound, id)
	}
	return decodeApproval(v)
}

func (r approvalsRepo) Put(ctx context.Context, a *approvals.Request) error {
	b, err := bucket(r.t.tx, BucketApprovals)
	if err != nil {
		return err
	}
	v, err := json.Marshal(storedApproval{Request: *a, Params: a.Params})
	if err != nil {
		return err
	}
	return b.Put([]byte(a.ID), v)
}

func (r approvalsRepo) List(ctx context.Context) ([]approvals.Request, error) {
	b, err := bucket(r.t.tx, BucketApprovals)
	if err != nil {
		return nil, err
	}
	var out []approvals.Request
	err = b.ForEach(func(k, v []byte) error {
		a, err := decodeApproval(v)
		if err != nil {
			return fmt.Errorf("approvals: request %s: %w", k, err)
		}
		out = append(out, *a)
		return nil
	})
	return out, err
}

// decodeApproval reads a stored request; json.Unmarshal copies, so nothing of the transaction's memory
// outlives the transaction.
func decodeApproval(v []byte) (*approvals.Request, error) {
	var st storedApproval
	if err := json.Unmarshal(v, &st); err != nil {
		return nil, err
	}
	st.Request.Params = st.Params
	return &st.Request, nil
}
