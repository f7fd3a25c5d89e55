package main

import (
	"fmt"
	"io"
	"net/http"

	"github.com/spf13/cobra"

	"github.com/halemdm/hale/api"
)

func (a *app) tokensCommand() *cobra.Command {
	cmd := group("tokens", "Create, list and revoke API tokens (admin)", "token")

	var req api.TokenRequest
	create := &cobra.Command{
		Use:   "create --name N --role admin|it|security|auditor|access [--person P] [--ttl 720h]",
		Short: "Create a token; it is printed once and cannot be shown again",
		Args:  cobra.NoArgs,
		RunE: runE(func(cmd *cobra.Command, _ []string) error {
			return show(a, cmd.Context(), http.MethodPost, "/api/v1/tokens", req, func(w io.Writer, t api.Token) error {
				if err := fields(w, "id", t.ID, "name", t.Name, "role", t.Role, "person", t.Person, "expires", ts(t.ExpiresAt), "token", t.Token); err != nil {
					return err
				}
				fmt.Fprintln(a.stderr, "The token is shown only now: store it in a secret manager.")
				return nil
			})
		}),
	}
	f := create.Flags()
	f.StringVar(&req.Name, "name", "", "who or what uses the token (it names the actor in the audit log)")
	f.StringVar(&req.Role, "role", "", "admin, it, security, auditor or access")
	f.StringVar(&req.Person, "person", "", "the person the token belongs to, as the two-person rule and the audit log count people (default: yours)")
	f.StringVar(&req.TTL, "ttl", "", "lifetime, like 720h (no expiry when empty)")
	_ = create.MarkFlagRequired("name")
	_ = create.MarkFlagRequired("role")

	list := &cobra.Command{
		Use:   "list",
		Short: "List tokens (never their secrets)",
		Args:  cobra.NoArgs,
		RunE: runE(func(cmd *cobra.Command, _ []string) error {
			return show(a, cmd.Context(), http.MethodGet, "/api/v1/tokens", nil, func(w io.Writer, ans api.Tokens) error {
				return tableOf(w, []string{"ID", "NAME", "ROLE", "PERSON", "STATE", "CREATED", "EXPIRES", "CREATED BY"}, ans.Tokens, func(t api.Token) []string {
					return []string{t.ID, t.Name, t.Role, t.Person, t.State, ts(t.CreatedAt), ts(t.ExpiresAt), t.CreatedBy}
				})
			})
		}),
	}

	revoke := &cobra.Command{
		Use:   "revoke ID",
		Short: "Revoke a token at once",
		Args:  cobra.ExactArgs(1),
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			return show(a, cmd.Context(), http.MethodDelete, pathf("/api/v1/tokens/%s", args[0]), nil, func(w io.Writer, t api.Token) error {
				_, err := fmt.Fprintf(w, "token %s (%s) is %s\n", sanitize(t.ID), sanitize(t.Name), sanitize(t.State))
				return err
			})
		}),
	}
	cmd.AddCommand(create, list, revoke)
	return cmd
}

func (a *app) pushcertCommand() *cobra.Command {
	cmd := group("pushcert", "Upload the APNs push certificate (admin)")
	var certFile, keyFile string
	upload := &cobra.Command{
		Use:   "upload FILE | --cert CERT.pem --key KEY.pem",
		Short: "Upload the APNs MDM push certificate and its private key",
		Long: `upload sends the APNs push certificate PEM followed by its private key PEM: either one FILE holding
both, or --cert and --key, which are concatenated.`,
		Args: cobra.MaximumNArgs(1),
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			const maxPart = 32 << 10
			var body []byte
			switch {
			case len(args) == 1 && certFile == "" && keyFile == "":
				b, err := readFileLimited(args[0], 2*maxPart)
				if err != nil {
					return err
				}
				body = b
			case len(args) == 0 && certFile != "" && keyFile != "":
				cert, err := readFileLimited(certFile, maxPart)
				if err != nil {
					return err
				}
				key, err := readFileLimited(keyFile, maxPart)
				if err != nil {
					return err
				}
				body = append(append(cert, '\n'), key...)
			default:
				return usagef("give FILE (certificate then key) or both --cert and --key")
			}
			return show(a, cmd.Context(), http.MethodPut, "/api/v1/pushcert", rawBody{body, "application/x-pem-file"}, func(w io.Writer, info api.PushCertificate) error {
				return fields(w, "topic", info.Topic, "expires", ts(info.NotAfter))
			})
		}),
	}
	upload.Flags().StringVar(&certFile, "cert", "", "PEM file of the push certificate")
	upload.Flags().StringVar(&keyFile, "key", "", "PEM file of its private key")
	cmd.AddCommand(upload)
	return cmd
}
