// Package grpcgate is the posture package's gate for gRPC servers: interceptors that let a call
// through only when Hale allows the device it comes from. It is apart from posture so that a
// backend serving only HTTP does not link gRPC.
package grpcgate

import (
	"context"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/halemdm/hale/posture"
)

// gRPC metadata keys the interceptors read (besides "authorization: Posture <jwt>", and
// "authorization: DPoP <jwt>" for the messaging app's key-bound tokens).
const (
	PostureTokenMetadata = "x-posture-token"
	DeviceIDMetadata     = "x-device-id"
	// DPoPMetadata carries the messaging app's DPoP proof, made for method POST and the URL
	// Gate.PublicURL (or https:// and the call's :authority) followed by the full method name
	// ("/chat.v1.Chat/Open"), as a gRPC call is an HTTP/2 POST to that path.
	DPoPMetadata = "dpop"
)

// UnaryServerInterceptor is posture.Middleware for gRPC: it lets a call through only if g allows its
// device, with the Access in the handler's context, and otherwise fails it with
// codes.PermissionDenied and a message "posture: session denied (code, ...): detail".
func UnaryServerInterceptor(g *posture.Gate) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		a, err := g.Authorize(ctx, presentedFromGRPC(ctx, g, info.FullMethod))
		if err != nil {
			return nil, grpcDenied(err)
		}
		return handler(posture.NewContext(ctx, a), req)
	}
}

// StreamServerInterceptor is UnaryServerInterceptor for streaming calls: the device is judged
// once, when the stream opens.
func StreamServerInterceptor(g *posture.Gate) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		a, err := g.Authorize(ss.Context(), presentedFromGRPC(ss.Context(), g, info.FullMethod))
		if err != nil {
			return grpcDenied(err)
		}
		return handler(srv, &accessStream{ServerStream: ss, ctx: posture.NewContext(ss.Context(), a)})
	}
}

type accessStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *accessStream) Context() context.Context { return s.ctx }

func presentedFromGRPC(ctx context.Context, g *posture.Gate, fullMethod string) posture.Presented {
	var p posture.Presented
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		for _, v := range md.Get("authorization") {
			if scheme, tok, ok := strings.Cut(strings.TrimSpace(v), " "); ok &&
				(strings.EqualFold(scheme, "Posture") || strings.EqualFold(scheme, "DPoP")) {
				p.Token = strings.TrimSpace(tok)
			}
		}
		if v := md.Get(DPoPMetadata); len(v) > 0 {
			base := strings.TrimRight(g.PublicURL, "/")
			if a := md.Get(":authority"); base == "" && len(a) > 0 {
				base = "https://" + a[0]
			}
			p.Proof, p.Method, p.URL = strings.TrimSpace(v[0]), "POST", base+fullMethod
		}
		if v := md.Get(PostureTokenMetadata); p.Token == "" && len(v) > 0 {
			p.Token = strings.TrimSpace(v[0])
		}
		if v := md.Get(DeviceIDMetadata); len(v) > 0 {
			p.DeviceID = v[0]
		}
	}
	if pr, ok := peer.FromContext(ctx); ok {
		if ti, ok := pr.AuthInfo.(credentials.TLSInfo); ok && len(ti.State.PeerCertificates) > 0 {
			p.Peer = ti.State.PeerCertificates[0]
		}
	}
	return p
}

func grpcDenied(err error) error {
	return status.Error(codes.PermissionDenied, posture.PublicDenial(err).Error())
}
