//go:build !unix

package collect

import "io/fs"

// fileOwner is unknown where ownership is not a uid (Windows ACLs).
func fileOwner(fs.FileInfo) (uint32, bool) { return 0, false }
