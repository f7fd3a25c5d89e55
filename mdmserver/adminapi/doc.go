// Package adminapi holds the HTTP handlers of the admin API (/api/v1): each file is one area
// (devices, enrollments, tokens, policies, commands, security, approvals, audit), with a handler
// type holding the services it calls. A handler decodes and validates the request into the
// wire types of package api, calls a domain service, and encodes the answer; the domain steps
// themselves live in the services. Roles are enforced by the route table in package mdmserver
// (routes.go), the one place an auditor reads who may do what.
package adminapi
