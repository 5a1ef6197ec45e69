package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/qtune/qtune/api"
	"github.com/qtune/qtune/policy"
)

// parseInterspersed parses flags wherever they stand among the
// arguments (`check DIR --against-agent` as well as the reverse), which
// the standard flag package does not: it stops at the first argument.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var rest []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return rest, nil
		}
		rest = append(rest, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// checkAgainstAgent compares a policy directory with the set the running
// agent has in force: the question to ask before `systemctl reload`.
// The directory defaults to the agent's own. It fails when the directory
// does not load (a reload would keep the set in force) or the agent
// cannot be asked.
func checkAgainstAgent(ctx context.Context, addr string, paths []string, stdout, stderr io.Writer) int {
	var st api.Status
	if err := agentGet(ctx, addr, "/v1/status", &st); err != nil {
		fmt.Fprintf(stderr, "qtune policy check --against-agent: %v\n", err)
		return exitFailure
	}
	if len(paths) == 0 {
		if st.Policy.Dir == "" {
			fmt.Fprintln(stderr, "qtune policy check --against-agent: the agent names no policy directory; give one")
			return exitUsage
		}
		paths = []string{st.Policy.Dir}
	}
	code := policyCheck(paths, stdout, stderr)
	if code != exitOK {
		fmt.Fprintln(stdout, "a reload would fail: the agent would keep the set it has in force")
		printInForce(stdout, st.Policy)
		return code
	}
	set, _, err := loadPolicies(paths)
	if err != nil {
		fmt.Fprintf(stderr, "qtune policy check: %v\n", err)
		return exitFailure
	}
	printInForce(stdout, st.Policy)
	printSetDiff(stdout, policy.DiffDefs(st.Policy.Defs, set.Defs()), st.Owned)
	return exitOK
}

// printInForce says which set the agent runs and where it came from.
func printInForce(w io.Writer, p api.PolicyStatus) {
	switch p.Source {
	case api.PolicyFromStore:
		fmt.Fprintf(w, "the agent runs the last good set from its state store (%d rules, loaded %s): its policy directory %s does not load since %s\n",
			len(p.Defs), p.LoadedAt.Local().Format(time.RFC3339), p.Dir, p.BrokenSince.Local().Format(time.RFC3339))
	case api.PolicyNone:
		fmt.Fprintf(w, "the agent runs no rules: its policy directory %s does not load since %s and no earlier set is stored\n",
			p.Dir, p.BrokenSince.Local().Format(time.RFC3339))
	default:
		fmt.Fprintf(w, "the agent runs %d rules from %s, loaded %s\n", len(p.Defs), p.Dir, p.LoadedAt.Local().Format(time.RFC3339))
	}
}

// printSetDiff lists what a reload to the checked set would change,
// naming the knobs a removed rule holds (a reload releases them).
func printSetDiff(w io.Writer, d policy.SetDiff, owned []api.OwnedStatus) {
	if d.Empty() {
		fmt.Fprintln(w, "no differences: a reload would change no rule")
		return
	}
	for _, r := range d.Added {
		fmt.Fprintf(w, "+ %s (%s): only in the files; a reload would start it\n", r.Name, r.File)
	}
	for _, r := range d.Changed {
		fmt.Fprintf(w, "~ %s (%s): defined differently in the files; a reload would run the new definition\n", r.Name, r.File)
	}
	for _, r := range d.Removed {
		fmt.Fprintf(w, "- %s: only in the set in force; a reload would remove it", r.Name)
		if held := heldBy(owned, r.Name); len(held) > 0 {
			fmt.Fprintf(w, " and release %s", strings.Join(held, ", "))
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "%d added, %d changed, %d removed\n", len(d.Added), len(d.Changed), len(d.Removed))
}

func heldBy(owned []api.OwnedStatus, rule string) []string {
	var out []string
	for _, o := range owned {
		if o.Rule == rule {
			out = append(out, fmt.Sprintf("%s of %s/%s", o.Knob, o.VM, o.Disk))
		}
	}
	return out
}
