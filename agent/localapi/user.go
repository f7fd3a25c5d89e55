//go:build linux || darwin

package localapi

import "os/user"

// userName is the account name of uid, or uid when it has none.
func userName(uid string) string {
	if u, err := user.LookupId(uid); err == nil && u.Username != "" {
		return u.Username
	}
	return uid
}
