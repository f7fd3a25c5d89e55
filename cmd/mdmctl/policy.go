package main

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// maxPolicy is the server's limit on a policy document (policies.MaxPolicySize).
const maxPolicy = 256 << 10

type policyView struct {
	Name      string    `json:"name"`
	Version   int       `json:"version"`
	UpdatedAt time.Time `json:"updated_at"`
	UpdatedBy string    `json:"updated_by"`
	Source    string    `json:"source"`
	// Unobservable comes with apply's answer (policies.UnobservableRule).
	Unobservable []unobservableRule `json:"unobservable"`
}

// unobservableRule is a rule of a policy that no source Hale has can observe on some platforms
// of an enrollment (policies.UnobservableRule).
type unobservableRule struct {
	Rule       string   `json:"rule"`
	Enrollment string   `json:"enrollment"`
	Platforms  []string `json:"platforms"`
	Needs      []string `json:"needs"`
	Why        string   `json:"why"`
}

// printUnobservable warns about a policy's unobservable rules, above a table of them; nothing
// when there are none. The policy still applies: it may be meant for other platforms.
func printUnobservable(w io.Writer, rules []unobservableRule) error {
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
	return tableOf(w, []string{"RULE", "ENROLLMENT", "PLATFORMS", "NEEDS"}, rules, func(u unobservableRule) []string {
		return []string{u.Rule, u.Enrollment, strings.Join(u.Platforms, ","), strings.Join(u.Needs, ", ")}
	})
}

type assignment struct {
	Target struct {
		Kind string `json:"kind"`
		Name string `json:"name"`
	} `json:"target"`
	Policy string `json:"policy"`
}

// policyList is the answer to a policy listing.
type policyList struct {
	Policies    []policyView
	Assignments []assignment
}

// noncompliant is a device a dry run would find noncompliant.
type noncompliant struct {
	DeviceID   string    `json:"device_id"`
	Group      string    `json:"group"`
	State      string    `json:"state"`
	Reasons    []reason  `json:"reasons"`
	InGrace    bool      `json:"in_grace"`
	GraceUntil time.Time `json:"grace_until"`
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
			return show(a, cmd.Context(), http.MethodPut, pathf("/api/v1/policies/%s", args[0]), rawBody{body, policyContentType(body)}, func(w io.Writer, p policyView) error {
				if _, err := fmt.Fprintf(w, "policy %s is at version %d\n", sanitize(p.Name), p.Version); err != nil {
					return err
				}
				return printUnobservable(w, p.Unobservable)
			})
		}),
	}

	get := &cobra.Command{
		Use:   "get NAME",
		Short: "Print a policy's source as it was applied",
		Args:  cobra.ExactArgs(1),
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			return show(a, cmd.Context(), http.MethodGet, pathf("/api/v1/policies/%s", args[0]), nil, func(w io.Writer, p policyView) error {
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
			return show(a, cmd.Context(), http.MethodGet, "/api/v1/policies", nil, func(w io.Writer, ans policyList) error {
				assigned := map[string][]string{}
				for _, as := range ans.Assignments {
					t := as.Target.Kind
					if as.Target.Name != "" {
						t += ":" + as.Target.Name
					}
					assigned[as.Policy] = append(assigned[as.Policy], t)
				}
				return tableOf(w, []string{"NAME", "VERSION", "UPDATED", "BY", "ASSIGNED TO"}, ans.Policies, func(p policyView) []string {
					return []string{p.Name, fmt.Sprint(p.Version), ts(p.UpdatedAt), p.UpdatedBy, strings.Join(assigned[p.Name], ",")}
				})
			})
		}),
	}

	var dr target
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
			kind, name, err := dr.resolve(false)
			if err != nil {
				return err
			}
			path := query(pathf("/api/v1/policies/%s/dry-run", args[0]), "kind", kind, "target", name)
			type answer struct {
				Noncompliant []noncompliant
				Unobservable []unobservableRule
			}
			return show(a, cmd.Context(), http.MethodPost, path, body, func(w io.Writer, ans answer) error {
				var err error
				if len(ans.Noncompliant) == 0 {
					_, err = fmt.Fprintln(w, "no device would be noncompliant")
				} else {
					err = tableOf(w, []string{"DEVICE", "GROUP", "STATE", "IN GRACE", "GRACE UNTIL", "REASONS"}, ans.Noncompliant, func(d noncompliant) []string {
						return []string{d.DeviceID, d.Group, d.State, yesNo(d.InGrace), ts(d.GraceUntil), reasonCodes(d.Reasons)}
					})
				}
				if err != nil {
					return err
				}
				return printUnobservable(w, ans.Unobservable)
			})
		}),
	}
	dr.flags(dryRun)

	var as target
	assign := &cobra.Command{
		Use:   "assign NAME (--default | --group G | --device D)",
		Short: "Assign a policy as the default, to a group or to one device",
		Args:  cobra.ExactArgs(1),
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			kind, name, err := as.resolve(true)
			if err != nil {
				return err
			}
			req := map[string]any{"target": map[string]string{"kind": kind, "name": name}, "policy": args[0]}
			return show(a, cmd.Context(), http.MethodPut, "/api/v1/assignments", req, func(w io.Writer, ans struct{ Assignments []assignment }) error {
				return tableOf(w, []string{"KIND", "TARGET", "POLICY"}, ans.Assignments, func(x assignment) []string {
					return []string{x.Target.Kind, x.Target.Name, x.Policy}
				})
			})
		}),
	}
	as.flags(assign)

	cmd.AddCommand(apply, get, list, dryRun, assign)
	return cmd
}

// target is what a policy is assigned to, from --default, --group or --device.
type target struct {
	def           bool
	group, device string
}

func (t *target) flags(cmd *cobra.Command) {
	cmd.Flags().BoolVar(&t.def, "default", false, "the default assignment (every device without a group or device policy)")
	cmd.Flags().StringVar(&t.group, "group", "", "a device group")
	cmd.Flags().StringVar(&t.device, "device", "", "one device")
}

// resolve returns the assignment target; required says one must be given.
func (t *target) resolve(required bool) (kind, name string, err error) {
	n := 0
	if t.def {
		n, kind = n+1, "default"
	}
	if t.group != "" {
		n, kind, name = n+1, "group", t.group
	}
	if t.device != "" {
		n, kind, name = n+1, "device", t.device
	}
	switch {
	case n > 1:
		return "", "", usagef("give one of --default, --group and --device")
	case n == 0 && required:
		return "", "", usagef("give one of --default, --group G or --device D")
	}
	return kind, name, nil
}
