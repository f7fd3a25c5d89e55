package certs

import (
	"crypto/x509"
	"fmt"
)

// Every certificate this CA issues names its Kind in its certificate policies extension, so a
// verifier can tell an agent identity from an Apple device identity or a server certificate
// without asking any store. All three are client- or server-auth certificates of the same CA:
// without the mark, an agent's certificate would pass for an Apple device's on /mdm.
//
// The OIDs live under 2.25.228331102008269581315649646280073997495, an arc derived from a UUID
// generated for Hale (ITU-T X.667: whoever generates the UUID owns its OID and may allocate
// below it). Arc .1 holds certificate kinds.
const kindOIDArc = "2.25.228331102008269581315649646280073997495.1"

// kindOIDs maps each issued kind to its policy OID. The SCEP RA certificate is never presented
// by a client and carries none.
var kindOIDs = map[Kind]x509.OID{
	KindAgent:    mustOID(kindOIDArc + ".1"),
	KindAppleMDM: mustOID(kindOIDArc + ".2"),
	KindServer:   mustOID(kindOIDArc + ".3"),
}

func mustOID(s string) x509.OID {
	oid, err := x509.ParseOID(s)
	if err != nil {
		panic(fmt.Sprintf("certs: bad built-in OID %s: %v", s, err))
	}
	return oid
}

// KindOf returns the kind a certificate of this CA was issued as, read from its policy OID. It
// returns 0 for a certificate that names no Hale kind: one issued by another CA, or one this CA
// issued before kinds were marked (the caller decides such a legacy identity by other means).
// A certificate naming two kinds is refused as 0 too: this CA never issues one.
func KindOf(cert *x509.Certificate) Kind {
	if cert == nil {
		return 0
	}
	var found Kind
	for _, p := range cert.Policies {
		for k, oid := range kindOIDs {
			if !p.Equal(oid) {
				continue
			}
			if found != 0 && found != k {
				return 0
			}
			found = k
		}
	}
	return found
}
