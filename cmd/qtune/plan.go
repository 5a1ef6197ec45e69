package main

import (
	"context"
	"fmt"
	"io"

	"github.com/qtune/qtune/api"
	"github.com/qtune/qtune/policy"
)

func init() {
	register(command{name: "plan", summary: "show what a new policy would change on this host, without acting", run: runPlan})
}

// runPlan replays the running agent's recent samples through a new policy
// and compares the decisions of the latest cycle with what is in force,
// the way terraform plan compares configuration with state.
func runPlan(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("qtune plan")
	fs.SetOutput(stderr)
	addr := fs.String("addr", defaultAddr, "the agent's listen address, or unix:PATH")
	dir := fs.String("policy", "", "the policy to try (file or directory)")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if *dir == "" {
		fmt.Fprintln(stderr, "qtune plan: give the policy to try with --policy DIR")
		return exitUsage
	}
	set, problems, err := policy.LoadPath(*dir)
	for _, w := range problems.Warnings() {
		fmt.Fprintln(stderr, w)
	}
	if err != nil {
		fmt.Fprintf(stderr, "%v\nqtune plan: the policy does not load\n", err)
		return exitFailure
	}
	var hist []api.Cycle
	var st api.Status
	if err := agentGet(ctx, *addr, "/v1/history", &hist); err != nil {
		fmt.Fprintf(stderr, "qtune plan: %v\n", err)
		return exitFailure
	}
	if err := agentGet(ctx, *addr, "/v1/status", &st); err != nil {
		fmt.Fprintf(stderr, "qtune plan: %v\n", err)
		return exitFailure
	}
	if len(hist) == 0 {
		fmt.Fprintln(stderr, "qtune plan: the agent has no samples yet")
		return exitFailure
	}
	ev := policy.NewEvaluator(set)
	var last []policy.Decision
	for _, c := range hist {
		last = ev.Evaluate(c.At, c.Points)
	}
	printPlan(stdout, set, hist[len(hist)-1], last, ev.States(), st)
	return exitOK
}

func printPlan(w io.Writer, set *policy.Set, cycle api.Cycle, ds []policy.Decision, states []policy.StateInfo, st api.Status) {
	fmt.Fprintf(w, "replayed %s of samples through %d rules; as of %s:\n", "the agent's recent history", len(set.Rules), cycle.At.Local().Format("15:04:05"))
	printInForce(w, st.Policy)
	if st.Policy.Source == api.PolicyFromStore {
		fmt.Fprintln(w, "this plan compares with that stored set, not with the files on disk")
	}
	if d := policy.DiffDefs(st.Policy.Defs, set.Defs()); !d.Empty() {
		printSetDiff(w, d, st.Owned)
	}
	fmt.Fprintln(w)
	changes := 0
	wanted := map[string]bool{}
	for _, d := range ds {
		key := d.VM + "/" + d.Disk + "/" + string(d.Knob)
		wanted[key] = true
		verb := "+ would set"
		if d.Revert {
			verb = "- would restore"
		}
		if d.Mode == policy.ModeRecommend {
			verb = "? would recommend"
		}
		if !d.Revert && inForce(cycle, d) {
			verb = "= keeps"
		}
		fmt.Fprintf(w, "%s %s of %s/%s (rule %s): %s\n", verb, d.Knob, d.VM, d.Disk, d.Rule, d.Describe())
		changes++
	}
	rules := map[string]bool{}
	for _, r := range set.Rules {
		rules[r.Name] = true
	}
	for _, o := range st.Owned {
		if !rules[o.Rule] && !wanted[o.VM+"/"+o.Disk+"/"+string(o.Knob)] {
			fmt.Fprintf(w, "- would restore %s of %s/%s to %s (rule %s is not in this policy)\n", o.Knob, o.VM, o.Disk, o.Original, o.Rule)
			changes++
		}
	}
	for _, s := range states {
		if s.State == policy.StatePending {
			fmt.Fprintf(w, "~ %s on %s/%s is pending since %s (condition true, not yet held for its `for`)\n", s.Rule, s.VM, s.Disk, s.Since.Local().Format("15:04:05"))
		}
	}
	if changes == 0 {
		fmt.Fprintln(w, "no changes: this policy would leave every knob as it is")
	}
}

// inForce reports whether the latest sample already shows the decision's
// desired state.
func inForce(c api.Cycle, d policy.Decision) bool {
	for i := range c.Points {
		if p := &c.Points[i]; p.Disk.VM == d.VM && p.Disk.Name == d.Disk {
			return d.InForce(p)
		}
	}
	return false
}
