package android

import (
	"regexp"
	"strings"
)

var (
	deviceName    = regexp.MustCompile(`^enterprises/[A-Za-z0-9_-]{1,64}/devices/[A-Za-z0-9_-]{1,128}$`)
	operationName = regexp.MustCompile(`^enterprises/[A-Za-z0-9_-]{1,64}/devices/[A-Za-z0-9_-]{1,128}/operations/[A-Za-z0-9_.-]{1,128}$`)
)

// inEnterprise reports whether a device or operation name belongs to enterprise.
func inEnterprise(name, enterprise string) bool {
	return strings.HasPrefix(name, enterprise+"/devices/")
}

// deviceOf is the device name of an operation name.
func deviceOf(operation string) string {
	if i := strings.Index(operation, "/operations/"); i > 0 {
		return operation[:i]
	}
	return ""
}
