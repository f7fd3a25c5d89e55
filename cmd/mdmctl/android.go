package main

import (
	"encoding/json"
	"io"
	"net/http"

	"github.com/spf13/cobra"

	"github.com/halemdm/hale/api"
)

// maxKeyFile bounds a service account key file (a real one is about 2.3 KiB).
const maxKeyFile = 16 << 10

func (a *app) androidCommand() *cobra.Command {
	cmd := group("android", "Bind to an Android Management API enterprise (admin)")
	var req api.AndroidBindRequest
	var keyFile string
	bind := &cobra.Command{
		Use:   "bind (--enterprise enterprises/ID | --signup-name N --enterprise-token T) --topic projects/P/topics/T --key SERVICE-ACCOUNT.json",
		Short: "Bind Hale to the organisation's Android enterprise with its service account",
		Long: `bind gives the server the organisation's Google Cloud service account key (stored sealed under the
server's master key) and its existing Android Management API enterprise. The server reads the
enterprise with the key and sends its notifications (ENROLLMENT, STATUS_REPORT, COMMAND) to the
Pub/Sub topic, whose push subscription must post to the server's /android/pubsub with an OIDC
token for the audience bind prints. A new enterprise (see android signup) is created with
--signup-name and --enterprise-token instead of --enterprise.`,
		Args: cobra.NoArgs,
		RunE: runE(func(cmd *cobra.Command, _ []string) error {
			if (req.Enterprise == "") == (req.SignupURLName == "" || req.EnterpriseToken == "") {
				return usagef("give --enterprise, or --signup-name and --enterprise-token for a new enterprise")
			}
			key, err := readFileLimited(keyFile, maxKeyFile)
			if err != nil {
				return err
			}
			if !json.Valid(key) {
				return usagef("%s is not a JSON key file", keyFile)
			}
			req.ServiceAccountKey = key
			return show(a, cmd.Context(), http.MethodPut, "/api/v1/android/binding", req, func(w io.Writer, b api.AndroidBinding) error {
				return fields(w, "enterprise", b.Enterprise, "service account", b.ServiceAccount, "topic", b.Topic,
					"bound", ts(b.BoundAt), "push path", b.PushPath, "push audience", b.PushAudience)
			})
		}),
	}
	f := bind.Flags()
	f.StringVar(&req.Enterprise, "enterprise", "", "the existing enterprise, enterprises/ID")
	f.StringVar(&req.Topic, "topic", "", "the Pub/Sub topic for the enterprise's notifications")
	f.StringVar(&keyFile, "key", "", "the service account's JSON key file")
	f.StringVar(&req.SignupURLName, "signup-name", "", "a new enterprise: the signup's name from android signup")
	f.StringVar(&req.EnterpriseToken, "enterprise-token", "", "a new enterprise: the token the signup's callback page shows")
	for _, n := range []string{"topic", "key"} {
		_ = bind.MarkFlagRequired(n)
	}
	status := &cobra.Command{
		Use:   "status",
		Short: "Show the Android enterprise binding",
		Args:  cobra.NoArgs,
		RunE: runE(func(cmd *cobra.Command, _ []string) error {
			return show(a, cmd.Context(), http.MethodGet, "/api/v1/android/binding", nil, func(w io.Writer, b api.AndroidBinding) error {
				return fields(w, "enterprise", b.Enterprise, "service account", b.ServiceAccount, "topic", b.Topic,
					"bound", ts(b.BoundAt), "bound by", b.BoundBy, "push path", b.PushPath, "push audience", b.PushAudience)
			})
		}),
	}
	var signupKey string
	var signupReq api.AndroidSignupRequest
	signup := &cobra.Command{
		Use:   "signup --key SERVICE-ACCOUNT.json [--admin-email ADDRESS]",
		Short: "Start creating a new Android enterprise in the service account's project",
		Long: `signup prints the page where the organisation's administrator creates its Android enterprise.
Google then shows the server's /android/signup-complete page with an enterprise token; finish with
android bind --signup-name NAME --enterprise-token TOKEN.`,
		Args: cobra.NoArgs,
		RunE: runE(func(cmd *cobra.Command, _ []string) error {
			key, err := readFileLimited(signupKey, maxKeyFile)
			if err != nil {
				return err
			}
			if !json.Valid(key) {
				return usagef("%s is not a JSON key file", signupKey)
			}
			signupReq.ServiceAccountKey = key
			return show(a, cmd.Context(), http.MethodPost, "/api/v1/android/signup", signupReq, func(w io.Writer, su api.AndroidSignup) error {
				return fields(w, "signup name", su.Name, "open", su.URL, "returns to", su.CallbackURL)
			})
		}),
	}
	signup.Flags().StringVar(&signupKey, "key", "", "the service account's JSON key file")
	signup.Flags().StringVar(&signupReq.AdminEmail, "admin-email", "", "prefill the signup page with this address")
	_ = signup.MarkFlagRequired("key")
	cmd.AddCommand(bind, signup, status)
	return cmd
}
