package main

import (
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/spf13/cobra"

	"github.com/halemdm/hale/api"
	"github.com/halemdm/hale/policies"
)

// maxPolicy is the server's limit on a policy document (policies.MaxPolicySize).
const maxPolicy = 256 << 10

// printUnobservable warns about a policy's unobservable rules, above a table of them; nothing
// when there are none. The policy still applies: it may be meant for other platforms.
func printUnobservable(w io.Writer, rules []policies.UnobservableRule) error {
	if len(rules) == 0 {
		return nil
	}
	what := fmt.Sprintf("%d rules of this policy", len(rules))
	if len(rules) == 1 {
		what = "1 rule of this policy"
	}
	fmt.Fprintf(w, "\nWARNING: %s cannot be observed on some platforms: nothing Hale has reports the\n"+
		"facts needed there, so devices there stay noncompliant whatever their real state, and are\n"+
		"denied when grace ends (-o json says why for each):\n", what)
	return tableOf(w, []string{"RULE", "ENROLLMENT", "PLATFORMS", "NEEDS"}, rules, func(u policies.UnobservableRule) []string {
		platforms := make([]string, len(u.Platforms))
		for i, p := range u.Platforms {
			platforms[i] = string(p)
		}
		return []string{u.Rule, u.Enrollment, strings.Join(platforms, ","), strings.Join(u.Needs, ", ")}
	})
}

// printNotEnforced notes a policy's rules that no device control enforces on some platforms;
// nothing when there are none. Devices there are not held to them.
func printNotEnforced(w io.Writer, rules []policies.NotEnforcedRule) error {
	if len(rules) == 0 {
		return nil
	}
	fmt.Fprintf(w, "\nNOTE: no device control enforces these rules on some platforms; devices there are\n"+
		"not held to them, and only the messaging app can keep the data in:\n")
	return tableOf(w, []string{"RULE", "PLATFORMS"}, rules, func(u policies.NotEnforcedRule) []string {
		platforms := make([]string, len(u.Platforms))
		for i, p := range u.Platforms {
			platforms[i] = string(p)
		}
		return []string{u.Rule, strings.Join(platforms, ",")}
	})
}

// readPolicyFile reads a policy from a file, or stdin for "-", bounded.
func (a *app) readPolicyFile(path string) ([]byte, error) {
	if path == "-" {
		return readLimited(a.stdin, "stdin", maxPolicy)
	}
	return readFileLimited(path, maxPolicy)
}

// policyContentType tells the server what it gets; it accepts either and sniffs anyway.
func policyContentType(b []byte) string {
	if s := strings.TrimSpace(string(b)); strings.HasPrefix(s, "{") {
		return "application/json"
	}
	return "application/yaml"
}

func (a *app) policyCommand() *cobra.Command {
	cmd := group("policy", "Apply, inspect, try and assign policies", "policies")

	apply := &cobra.Command{
		Use:   "apply NAME FILE",
		Short: "Create or update a policy from a YAML or JSON file (- for stdin)",
		Args:  cobra.ExactArgs(2),
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			body, err := a.readPolicyFile(args[1])
			if err != nil {
				return err
			}
			return show(a, cmd.Context(), http.MethodPut, pathf("/api/v1/policies/%s", args[0]), rawBody{body, policyContentType(body)}, func(w io.Writer, p api.PolicyApplied) error {
				if _, err := fmt.Fprintf(w, "policy %s is at version %d\n", sanitize(p.Name), p.Version); err != nil {
					return err
				}
				if err := printUnobservable(w, p.Unobservable); err != nil {
					return err
				}
				return printNotEnforced(w, p.NotEnforced)
			})
		}),
	}

	get := &cobra.Command{
		Use:   "get NAME",
		Short: "Print a policy's source as it was applied",
		Args:  cobra.ExactArgs(1),
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			return show(a, cmd.Context(), http.MethodGet, pathf("/api/v1/policies/%s", args[0]), nil, func(w io.Writer, p api.Policy) error {
				// The source as it is, so `mdmctl policy get x > x.yaml` round-trips; the version
				// goes to stderr.
				fmt.Fprintf(a.stderr, "policy %s version %d, updated %s by %s\n", sanitize(p.Name), p.Version, ts(p.UpdatedAt), cell(p.UpdatedBy))
				src := p.Source
				if !strings.HasSuffix(src, "\n") {
					src += "\n"
				}
				_, err := io.WriteString(w, src)
				return err
			})
		}),
	}

	list := &cobra.Command{
		Use:   "list",
		Short: "List policies and where they are assigned",
		Args:  cobra.NoArgs,
		RunE: runE(func(cmd *cobra.Command, _ []string) error {
			return show(a, cmd.Context(), http.MethodGet, "/api/v1/policies", nil, func(w io.Writer, ans api.Policies) error {
				assigned := map[string][]string{}
				for _, as := range ans.Assignments {
					t := as.Target.Kind
					if as.Target.Name != "" {
						t += ":" + as.Target.Name
					}
					assigned[as.Policy] = append(assigned[as.Policy], t)
				}
				return tableOf(w, []string{"NAME", "VERSION", "UPDATED", "BY", "ASSIGNED TO"}, ans.Policies, func(p api.Policy) []string {
					return []string{p.Name, fmt.Sprint(p.Version), ts(p.UpdatedAt), p.UpdatedBy, strings.Join(assigned[p.Name], ",")}
				})
			})
		}),
	}

	var dr targetFlags
	dryRun := &cobra.Command{
		Use:   "dry-run NAME [FILE] [--default | --group G | --device D]",
		Short: "Show the devices that would be noncompliant under a policy; nothing changes",
		Long: `dry-run evaluates every device the policy would apply to against the policy in FILE (or the stored
policy NAME) and lists those that would be noncompliant, with reasons. Without a target it uses
the default assignment. It also lists the policy's rules that no source Hale has can observe on
some platforms: devices there could never meet them.`,
		Args: cobra.RangeArgs(1, 2),
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			var body any
			if len(args) == 2 {
				b, err := a.readPolicyFile(args[1])
				if err != nil {
					return err
				}
				body = rawBody{b, policyContentType(b)}
			}
			t, err := dr.resolve(false)
			if err != nil {
				return err
			}
			path := query(pathf("/api/v1/policies/%s/dry-run", args[0]), "kind", t.Kind, "target", t.Name)
			return show(a, cmd.Context(), http.MethodPost, path, body, func(w io.Writer, ans api.DryRun) error {
				var err error
				if len(ans.Noncompliant) == 0 {
					_, err = fmt.Fprintln(w, "no device would be noncompliant")
				} else {
					err = tableOf(w, []string{"DEVICE", "GROUP", "STATE", "IN GRACE", "GRACE UNTIL", "REASONS"}, ans.Noncompliant, func(d api.DryRunDevice) []string {
						return []string{d.DeviceID, d.Group, d.State, yesNo(d.InGrace), ts(d.GraceUntil), reasonCodes(d.Reasons)}
					})
				}
				if err != nil {
					return err
				}
				if err := printUnobservable(w, ans.Unobservable); err != nil {
					return err
				}
				if err := printNotEnforced(w, ans.NotEnforced); err != nil {
					return err
				}
				for _, c := range ans.Conflicts {
					if _, err := fmt.Fprintf(w, "\nNOTE: %s\n", sanitize(c)); err != nil {
						return err
					}
				}
				return nil
			})
		}),
	}
	dr.flags(dryRun)

	var as targetFlags
	assign := &cobra.Command{
		Use:   "assign NAME (--default | --group G | --device D)",
		Short: "Assign a policy as the default, to a group or to one device",
		Args:  cobra.ExactArgs(1),
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			t, err := as.resolve(true)
			if err != nil {
				return err
			}
			req := api.Assignment{Target: t, Policy: args[0]}
			return show(a, cmd.Context(), http.MethodPut, "/api/v1/assignments", req, func(w io.Writer, ans api.Assignments) error {
				return tableOf(w, []string{"KIND", "TARGET", "POLICY"}, ans.Assignments, func(x api.Assignment) []string {
					return []string{x.Target.Kind, x.Target.Name, x.Policy}
				})
			})
		}),
	}
	as.flags(assign)

	cmd.AddCommand(apply, get, list, dryRun, assign)
	return cmd
}

// targetFlags are --default, --group and --device, which name what a policy is assigned to (an
// api.Target).
type targetFlags struct {
	def           bool
	group, device string
}

func (t *targetFlags) flags(cmd *cobra.Command) {
	cmd.Flags().BoolVar(&t.def, "default", false, "the default assignment (every device without a group or device policy)")
	cmd.Flags().StringVar(&t.group, "group", "", "a device group")
	cmd.Flags().StringVar(&t.device, "device", "", "one device")
}

// resolve returns the assignment target, zero when none is given; required says one must be.
func (t *targetFlags) resolve(required bool) (api.Target, error) {
	n, target := 0, api.Target{}
	if t.def {
		n, target = n+1, api.Target{Kind: "default"}
	}
	if t.group != "" {
		n, target = n+1, api.Target{Kind: "group", Name: t.group}
	}
	if t.device != "" {
		n, target = n+1, api.Target{Kind: "device", Name: t.device}
	}
	switch {
	case n > 1:
		return api.Target{}, usagef("give one of --default, --group and --device")
	case n == 0 && required:
		return api.Target{}, usagef("give one of --default, --group G or --device D")
	}
	return target, nil
}
