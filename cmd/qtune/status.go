package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/qtune/qtune/api"
	"github.com/qtune/qtune/internal/sample"
	"github.com/qtune/qtune/policy"
)

func init() {
	register(command{name: "status", summary: "show what the running agent sees and does", run: runStatus})
}

const defaultAddr = "127.0.0.1:9477"

// agentGet fetches a JSON document from the running agent.
func agentGet(ctx context.Context, addr, path string, v any) error {
	client := &http.Client{Timeout: 10 * time.Second}
	base := "http://" + addr
	if sock, ok := strings.CutPrefix(addr, "unix:"); ok {
		base = "http://qtune"
		client.Transport = &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		}}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("is the agent running and listening on %s? %w", addr, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("agent at %s: %s", addr, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

func runStatus(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("qtune status")
	fs.SetOutput(stderr)
	addr := fs.String("addr", defaultAddr, "the agent's listen address, or unix:PATH")
	asJSON := fs.Bool("json", false, "print the raw status document")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	var st api.Status
	if err := agentGet(ctx, *addr, "/v1/status", &st); err != nil {
		fmt.Fprintf(stderr, "qtune status: %v\n", err)
		return exitFailure
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(st)
		return exitOK
	}
	printStatus(stdout, st)
	return exitOK
}

func printStatus(w io.Writer, st api.Status) {
	conn := "connected"
	if !st.Connected {
		conn = "DISCONNECTED"
	}
	printAgentVersion(w, st.Version)
	fmt.Fprintf(w, "backend %s: %s (reconnects %d), interval %s, last cycle %s took %s%s\n",
		st.Backend, conn, st.Reconnects, st.Interval, st.LastCycle.Local().Format("15:04:05"), st.CycleDuration,
		map[bool]string{true: ", DRY RUN", false: ""}[st.DryRun])
	if st.StoreError != "" {
		fmt.Fprintf(w, "STATE STORE REFUSED, nothing is changed until it is repaired or restored (qtune state check):\n  %s\n", st.StoreError)
	}
	if len(st.BackendCapabilities) > 0 {
		fmt.Fprintf(w, "%s offers: %s\n", st.Backend, strings.Join(st.BackendCapabilities, ", "))
	}
	printPolicyStatus(w, st.Policy)
	printHistogramStatus(w, st.Histograms)
	fmt.Fprintf(w, "\n%-16s %-8s %8s %8s %9s %9s %-10s %s\n", "VM", "DISK", "R_IOPS", "W_IOPS", "R_LAT_ms", "W_LAT_ms", "CACHE", "THROTTLE")
	for _, vm := range st.VMs {
		if vm.State != "" && vm.State != "running" {
			fmt.Fprintf(w, "%-16s %s\n", vm.Name, strings.ToUpper(strings.TrimSuffix(vm.State+" ("+vm.StateReason+")", " ()")))
		}
		if len(vm.Capabilities) > 0 {
			fmt.Fprintf(w, "%-16s qemu offers: %s\n", vm.Name, strings.Join(vm.Capabilities, ", "))
		}
		if vm.Migration != "" {
			fmt.Fprintf(w, "%-16s MIGRATING: %s\n", vm.Name, vm.Migration)
		}
		if vm.MigrationBlocked != "" {
			fmt.Fprintf(w, "%-16s NOT MIGRATABLE: %s\n", vm.Name, vm.MigrationBlocked)
		}
		for _, d := range vm.Disks {
			fmt.Fprintf(w, "%-16s %-8s %8.0f %8.0f %9s %9s %-10s %s\n", vm.Name, d.Name, d.ReadIOPS, d.WriteIOPS,
				ms(d.ReadLatency), ms(d.WriteLatency), d.Cache, throttleText(d.Throttle != nil, func() string { return policy.ThrottleText(*d.Throttle) }))
			if d.LatencySource == sample.LatencyTimed {
				fmt.Fprintf(w, "%-16s %-8s latency from libvirt's timed statistics: longest read %s ms, write %s ms (no QMP)\n", "", "", ms(d.ReadMax), ms(d.WriteMax))
			}
			if slices.Contains(d.Recorded, string(policy.KnobL2Cache)) {
				fmt.Fprintf(w, "%-16s %-8s l2 cache %s: qtune's record of what it set (QEMU cannot report it)\n", "", "", policy.SizeText(d.L2CacheSize))
			}
		}
	}
	printCadences(w, st.VMs)
	if len(st.Rules) > 0 {
		fmt.Fprintln(w, "\nRULES")
		for _, r := range st.Rules {
			fmt.Fprintf(w, "  %-28s %s/%s %s since %s\n", r.Rule, r.VM, r.Disk, r.State, r.Since.Local().Format("15:04:05"))
		}
	}
	if len(st.Findings) > 0 {
		fmt.Fprintln(w, "\nDISK FINDINGS (qtune doctor's checks; docs/doctor.md says what to do)")
		for _, f := range st.Findings {
			fmt.Fprintf(w, "  %-8s %s/%s %s: %s\n", f.Severity, f.VM, f.Disk, f.Check, f.Summary)
		}
	}
	if len(st.Owned) > 0 {
		fmt.Fprintln(w, "\nOWNED KNOBS (restored when their rule stops firing)")
		for _, o := range st.Owned {
			fmt.Fprintf(w, "  %-9s %s/%s %s by %s: %s (was %s), since %s\n", strings.ToUpper(o.State), o.VM, o.Disk, o.Knob, o.Rule,
				o.Applied, o.Original, o.Owned.Since.Local().Format("15:04:05"))
			if o.NotReadBack {
				fmt.Fprintln(w, "            QEMU cannot report this knob: the value is qtune's record, not a reading")
			}
			if o.Host != "" {
				fmt.Fprintf(w, "            set on %s (change %d of the VM)\n", o.Host, o.Seq)
			}
			if o.RecordMismatch != "" {
				fmt.Fprintf(w, "            RECORDS DISAGREE: %s\n", o.RecordMismatch)
			}
			switch {
			case o.IdentityNote != "":
				fmt.Fprintf(w, "            VM identity unknown, matched by name only: %s\n", o.IdentityNote)
			case o.VMID.Known():
				fmt.Fprintf(w, "            taken on %s\n", o.VMID)
			}
			if o.Reason != "" {
				line := "            " + o.Reason
				if o.State == api.OwnedOrphaned {
					line += " (orphaned since " + o.Since.Local().Format("15:04:05") + ")"
				}
				fmt.Fprintln(w, line)
			}
		}
	}
	if st.OwnedError != "" {
		fmt.Fprintf(w, "\nOWNED KNOBS NOT ALL READABLE from the state store: %s\n", st.OwnedError)
	}
	if len(st.Jobs) > 0 {
		fmt.Fprintln(w, "\nBLOCK JOBS")
		printJobs(w, st.Jobs, true, time.Now())
	}
	if len(st.Actions) > 0 {
		fmt.Fprintln(w, "\nRECENT ACTIONS")
		for _, a := range st.Actions {
			line := fmt.Sprintf("  %s %-13s %s %s/%s %s: %s -> %s", a.At.Local().Format("15:04:05"), a.Result, a.Rule, a.VM, a.Disk, a.Knob, a.Before, a.After)
			if a.Error != "" {
				line += " (" + a.Error + ")"
			}
			fmt.Fprintln(w, line)
		}
	}
	if len(st.Errors) > 0 {
		fmt.Fprintln(w, "\nERRORS")
		keys := make([]string, 0, len(st.Errors))
		for k := range st.Errors {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(w, "  %s: %s\n", k, st.Errors[k])
		}
	}
	if len(st.Tainted) > 0 {
		fmt.Fprintf(w, "\nTAINTED (QMP sent through libvirt; live disk settings differ from the XML): %s\n", strings.Join(st.Tainted, ", "))
	}
}

func ms(v *float64) string {
	if v == nil {
		return "-"
	}
	return fmt.Sprintf("%.2f", *v)
}

func throttleText(ok bool, f func() string) string {
	if !ok {
		return "-"
	}
	return f()
}

// printPolicyStatus says which set is in force and where it came from.
func printPolicyStatus(w io.Writer, p api.PolicyStatus) {
	switch p.Source {
	case api.PolicyFromStore:
		fmt.Fprintf(w, "policy %s DOES NOT LOAD (since %s); in force: the last good set from the state store, %d rules, loaded %s\n",
			p.Dir, p.BrokenSince.Local().Format(time.RFC3339), len(p.Rules), p.LoadedAt.Local().Format(time.RFC3339))
	case api.PolicyNone:
		fmt.Fprintf(w, "policy %s DOES NOT LOAD (since %s) and no earlier set is stored: no rules in force; knobs qtune holds are kept, not released\n",
			p.Dir, p.BrokenSince.Local().Format(time.RFC3339))
	default:
		fmt.Fprintf(w, "policy %s: %d rules, loaded %s\n", p.Dir, len(p.Rules), p.LoadedAt.Local().Format("15:04:05"))
	}
	if p.Error != "" {
		fmt.Fprintf(w, "  LAST LOAD FAILED, the policy above stays in force:\n    %s\n", strings.ReplaceAll(p.Error, "\n", "\n    "))
	}
}

func printHistogramStatus(w io.Writer, h api.HistogramStatus) {
	state := map[bool]string{true: "on", false: "off"}[h.On]
	fmt.Fprintf(w, "latency histograms %s (%s)\n", state, h.Why)
	if len(h.Unknown) > 0 {
		fmt.Fprintf(w, "  p95/p99 metrics stay unknown for rules: %s\n", strings.Join(h.Unknown, ", "))
	}
}

// printCadences says how often each VM is sampled and why: every
// interval when busy or watched, every idle_interval when quiet.
func printCadences(w io.Writer, vms []api.VMStatus) {
	head := false
	for _, vm := range vms {
		if vm.Cadence == "" {
			continue
		}
		if !head {
			fmt.Fprintln(w, "\nSAMPLING (every interval when busy or watched, every idle_interval when quiet)")
			head = true
		}
		last := ""
		if !vm.LastSampled.IsZero() {
			last = ", last " + vm.LastSampled.Local().Format("15:04:05")
		}
		fmt.Fprintf(w, "  %-16s every %-5s %s%s\n", vm.Name, vm.Cadence, vm.CadenceReason, last)
	}
}
