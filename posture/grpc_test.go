package posture_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/halemdm/hale/posture"
	"github.com/halemdm/hale/posture/grpcgate"
)

func grpcContext(cert *x509.Certificate, md ...string) context.Context {
	ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs(md...))
	if cert == nil {
		return ctx
	}
	return peer.NewContext(ctx, &peer.Peer{AuthInfo: credentials.TLSInfo{
		State: tls.ConnectionState{PeerCertificates: []*x509.Certificate{cert}},
	}})
}

func TestUnaryServerInterceptor(t *testing.T) {
	f := newGateFixture(t)
	intercept := grpcgate.UnaryServerInterceptor(&posture.Gate{Verifier: f.verifier, Client: f.client})
	var reached posture.Access
	handler := func(ctx context.Context, req any) (any, error) {
		reached, _ = posture.FromContext(ctx)
		return "ok", nil
	}
	call := func(ctx context.Context) (any, error) {
		reached = posture.Access{}
		return intercept(ctx, "req", &grpc.UnaryServerInfo{FullMethod: "/chat.Chat/Open"}, handler)
	}
	wantDenied := func(resp any, err error, code string) {
		t.Helper()
		st, _ := status.FromError(err)
		if resp != nil || st.Code() != codes.PermissionDenied || !strings.Contains(st.Message(), "("+code) {
			t.Fatalf("got %v, %v; want PermissionDenied with %s", resp, err, code)
		}
		if reached.DeviceID != "" {
			t.Fatal("a denied call reached the handler")
		}
	}

	if resp, err := call(grpcContext(f.cert, grpcgate.PostureTokenMetadata, f.token(t, "d1"))); err != nil || resp != "ok" || reached.DeviceID != "d1" || reached.Claims == nil {
		t.Fatalf("token: %v, %v, %+v", resp, err, reached)
	}
	if resp, err := call(grpcContext(f.cert, "authorization", "Posture "+f.token(t, "d1"))); err != nil || resp != "ok" {
		t.Fatalf("token in authorization: %v, %v", resp, err)
	}
	if resp, err := call(grpcContext(f.cert)); err != nil || resp != "ok" || !reached.Live {
		t.Fatalf("certificate: %v, %v", resp, err)
	}
	resp, err := call(grpcContext(deviceCert(t, "thief"), grpcgate.PostureTokenMetadata, f.token(t, "d1")))
	wantDenied(resp, err, posture.ReasonInvalidToken)
	resp, err = call(grpcContext(nil, grpcgate.DeviceIDMetadata, "d1"))
	wantDenied(resp, err, posture.ReasonNoDeviceIdentity)

	f.hale.setCert(f.cert, "d2")
	f.client.Invalidate("d1")
	resp, err = call(grpcContext(f.cert))
	wantDenied(resp, err, "encryption_off")
}

type fakeStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s fakeStream) Context() context.Context { return s.ctx }

func TestStreamServerInterceptor(t *testing.T) {
	f := newGateFixture(t)
	intercept := grpcgate.StreamServerInterceptor(&posture.Gate{Verifier: f.verifier})
	var reached string
	handler := func(_ any, ss grpc.ServerStream) error {
		a, _ := posture.FromContext(ss.Context())
		reached = a.DeviceID
		return nil
	}
	info := &grpc.StreamServerInfo{FullMethod: "/chat.Chat/Stream"}
	if err := intercept(nil, fakeStream{ctx: grpcContext(f.cert, grpcgate.PostureTokenMetadata, f.token(t, "d1"))}, info, handler); err != nil || reached != "d1" {
		t.Fatalf("%v, %q", err, reached)
	}
	reached = ""
	err := intercept(nil, fakeStream{ctx: grpcContext(f.cert)}, info, handler) // no Client: a certificate alone proves nothing
	if status.Code(err) != codes.PermissionDenied || reached != "" {
		t.Fatalf("%v, %q", err, reached)
	}
}
