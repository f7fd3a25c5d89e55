package mdmserver

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"hash/fnv"
	"strings"
	"sync"

	"github.com/micromdm/nanolib/storage/kv"
	"github.com/micromdm/nanomdm/mdm"
	"github.com/micromdm/nanomdm/service"
	"github.com/micromdm/nanomdm/service/nanomdm"

	"github.com/halemdm/hale/mdmserver/commands"
	"github.com/halemdm/hale/mdmserver/storage/boltstore"
	"github.com/halemdm/hale/mdmserver/storage/pgmdm"
)

// migrateMDM copies nanomdm's state from the bbolt file into nanomdm's PostgreSQL storage:
// enrollments by replaying their check-ins through nanomdm's own service (what nanomdm offers
// for moving between its storages: RetrieveMigrationCheckins), then the certificate
// associations, nanomdm's push certificates and the queued commands, whose sealed bodies move
// as they are.
func migrateMDM(ctx context.Context, bolt *boltstore.Store, dst *pgmdm.Storage, res *MigrateResult) error {
	src, err := boltstore.NewMDMStorage(bolt)
	if err != nil {
		return err
	}
	devices, err := bolt.Bucket(boltstore.MDMBucketPrefix + "devices")
	if err != nil {
		return err
	}
	enrolled, err := replayCheckins(ctx, src, devices, dst, res)
	if err != nil {
		return err
	}
	if err := copyUnlockTokens(ctx, bolt, enrolled, dst, res); err != nil {
		return err
	}
	if err := copyCertAuth(ctx, bolt, dst, res); err != nil {
		return err
	}
	if err := copyNanoPushCerts(ctx, bolt, dst, res); err != nil {
		return err
	}
	var queued []pgmdm.ImportedCommand
	err = bolt.Export(func(ex *boltstore.Export) error {
		return ex.QueuedCommands(func(c boltstore.QueuedCommand) error {
			if !enrolled[c.EnrollmentID] {
				// A disabled enrollment is not replayed (nanomdm skips it), and its queue is
				// cleared when it enrolls again anyway.
				res.QueueDropped++
				return nil
			}
			queued = append(queued, pgmdm.ImportedCommand{EnrollmentID: c.EnrollmentID, UUID: c.UUID,
				RequestType: c.RequestType, Sealed: c.Stored, NotNow: c.NotNow})
			return nil
		})
	})
	if err != nil {
		return err
	}
	if err := dst.ImportQueue(ctx, queued); err != nil {
		return err
	}
	res.Queued = len(queued)
	return nil
}

// replayWorkers is how many check-ins replay at once. Each is a few round trips to the database,
// which waits on them rather than on the processor; one device's check-ins stay in order.
const replayWorkers = 8

// replayCheckins replays every enabled enrollment's check-ins (Authenticate, TokenUpdate, a
// bootstrap token, a user channel's UserAuthenticate and TokenUpdate) into dst, each device's
// (with its user channels) in nanomdm's order on one worker, with the device's identity
// certificate. It returns the enrollment IDs replayed.
func replayCheckins(ctx context.Context, src *boltstore.MDMStorage, devices *boltstore.Bucket, dst *pgmdm.Storage, res *MigrateResult) (map[string]bool, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	checkins := make(chan any)
	retrieved := make(chan error, 1)
	go func() {
		retrieved <- src.RetrieveMigrationCheckins(ctx, checkins)
		close(checkins)
	}()
	svc := nanomdm.New(dst)
	var mu sync.Mutex
	enrolled := map[string]bool{}
	var wg sync.WaitGroup
	queues := make([]chan any, replayWorkers)
	for i := range queues {
		queues[i] = make(chan any, 64)
		wg.Go(func() {
			for msg := range queues[i] {
				if ctx.Err() != nil {
					continue // drain
				}
				id, err := replayOne(ctx, svc, dst, devices, msg)
				if err != nil {
					cancel(err)
					continue
				}
				mu.Lock()
				res.CheckIns++
				if id != "" {
					enrolled[id] = true
				}
				mu.Unlock()
			}
		})
	}
	for msg := range checkins {
		h := fnv.New32a()
		h.Write([]byte(deviceChannel(msg)))
		queues[h.Sum32()%replayWorkers] <- msg
	}
	for _, q := range queues {
		close(q)
	}
	wg.Wait()
	err := context.Cause(ctx)
	if rerr := <-retrieved; err == nil && rerr != nil {
		err = fmt.Errorf("reading the check-ins of the bbolt file: %w", rerr)
	}
	for id := range enrolled {
		if !strings.Contains(id, ":") {
			res.Devices++
		}
	}
	res.Enrollments = len(enrolled)
	return enrolled, err
}

// deviceChannel returns the device a check-in message is of ("" for anything else).
func deviceChannel(msg any) string {
	var e *mdm.Enrollment
	switch m := msg.(type) {
	case *mdm.Authenticate:
		e = &m.Enrollment
	case *mdm.TokenUpdate:
		e = &m.Enrollment
	case *mdm.SetBootstrapToken:
		e = &m.Enrollment
	case *mdm.UserAuthenticate:
		e = &m.Enrollment
	default:
		return ""
	}
	if r := e.Resolved(); r != nil {
		return r.DeviceChannelID
	}
	return ""
}

// replayOne replays one check-in message. It returns the enrollment ID a TokenUpdate enabled.
func replayOne(ctx context.Context, svc service.Checkin, dst *pgmdm.Storage, devices *boltstore.Bucket, msg any) (enabled string, err error) {
	r := mdm.NewRequestWithContext(ctx, nil)
	switch m := msg.(type) {
	case *mdm.Authenticate:
		id := commands.EnrollmentID(&m.Enrollment)
		der, err := devices.Get(ctx, id+".cert")
		switch {
		case errors.Is(err, kv.ErrKeyNotFound): // enrolled without one: nanomdm keeps none
		case err != nil:
			return "", fmt.Errorf("the identity certificate of device %s: %w", id, err)
		default:
			if r.Certificate, err = x509.ParseCertificate(der); err != nil {
				return "", fmt.Errorf("the identity certificate of device %s: %w", id, err)
			}
		}
		if err := svc.Authenticate(r, m); err != nil {
			return "", fmt.Errorf("replaying the Authenticate of %s: %w", id, err)
		}
	case *mdm.TokenUpdate:
		if err := svc.TokenUpdate(r, m); err != nil {
			return "", fmt.Errorf("replaying a TokenUpdate: %w", err)
		}
		enabled = commands.EnrollmentID(&m.Enrollment)
	case *mdm.SetBootstrapToken:
		if err := svc.SetBootstrapToken(r, m); err != nil {
			return "", fmt.Errorf("replaying a bootstrap token: %w", err)
		}
	case *mdm.UserAuthenticate:
		// nanomdm's service answers UserAuthenticate through a handler, not the storage; the
		// message itself is the storage's to keep.
		rs := m.Enrollment.Resolved()
		r.EnrollID = &mdm.EnrollID{ID: commands.EnrollmentID(&m.Enrollment), ParentID: rs.DeviceChannelID, Type: rs.Type}
		if err := dst.StoreUserAuthenticate(r, m); err != nil {
			return "", fmt.Errorf("replaying a UserAuthenticate: %w", err)
		}
	case error:
		return "", fmt.Errorf("reading the check-ins of the bbolt file: %w", m)
	default:
		return "", fmt.Errorf("unexpected check-in %T from nanomdm's migration", msg)
	}
	return enabled, nil
}

// copyUnlockTokens copies the unlock tokens of the devices replayed ("<id>.unl_tok" in the kv
// storage's enrollments), which the replayed TokenUpdate may not carry.
func copyUnlockTokens(ctx context.Context, bolt *boltstore.Store, enrolled map[string]bool, dst *pgmdm.Storage, res *MigrateResult) error {
	b, err := bolt.Bucket(boltstore.MDMBucketPrefix + "enrollments")
	if err != nil {
		return err
	}
	for id := range enrolled {
		if strings.Contains(id, ":") {
			continue // a user channel has none
		}
		tok, err := b.Get(ctx, id+".unl_tok")
		if errors.Is(err, kv.ErrKeyNotFound) {
			continue
		} else if err != nil {
			return fmt.Errorf("the unlock token of %s: %w", id, err)
		}
		if err := dst.ImportUnlockToken(ctx, id, tok); err != nil {
			return err
		}
		res.UnlockTokens++
	}
	return nil
}

// copyCertAuth copies the associations of enrollments with the hash of their identity
// certificate, which nanomdm's certauth checks on every request ("<id>.cert_hash" in the kv
// storage).
func copyCertAuth(ctx context.Context, bolt *boltstore.Store, dst *pgmdm.Storage, res *MigrateResult) error {
	b, err := bolt.Bucket(boltstore.MDMBucketPrefix + "cert_auth")
	if err != nil {
		return err
	}
	for key := range b.Keys(ctx, nil) {
		id, ok := strings.CutSuffix(key, ".cert_hash")
		if !ok {
			continue
		}
		hash, err := b.Get(ctx, key)
		if err != nil {
			return fmt.Errorf("certificate association of %s: %w", id, err)
		}
		r := mdm.NewRequestWithContext(ctx, nil)
		r.EnrollID = &mdm.EnrollID{ID: id}
		if err := dst.AssociateCertHash(r, string(hash)); err != nil {
			return fmt.Errorf("certificate association of %s: %w", id, err)
		}
		res.CertAssociations++
	}
	return ctx.Err()
}

// copyNanoPushCerts copies push certificates kept in nanomdm's own storage. Hale keeps its push
// certificate in its own repository (a kvstore bucket, copied with the rest), so there is
// usually none here.
func copyNanoPushCerts(ctx context.Context, bolt *boltstore.Store, dst *pgmdm.Storage, res *MigrateResult) error {
	b, err := bolt.Bucket(boltstore.MDMBucketPrefix + "push_cert")
	if err != nil {
		return err
	}
	for key := range b.Keys(ctx, nil) {
		topic, ok := strings.CutSuffix(key, ".pem")
		if !ok {
			continue
		}
		cert, err := b.Get(ctx, key)
		if err != nil {
			return fmt.Errorf("nanomdm push certificate %s: %w", topic, err)
		}
		pk, err := b.Get(ctx, topic+".key")
		if err != nil {
			return fmt.Errorf("nanomdm push certificate %s: %w", topic, errors.Join(err, errors.New("no key")))
		}
		if err := dst.StorePushCert(ctx, cert, pk); err != nil {
			return fmt.Errorf("nanomdm push certificate %s: %w", topic, err)
		}
		res.NanoPushCerts++
	}
	return ctx.Err()
}
