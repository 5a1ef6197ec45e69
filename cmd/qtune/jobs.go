package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/qtune/qtune/api"
	"github.com/qtune/qtune/jobs"
	"github.com/qtune/qtune/policy"
)

func init() {
	register(command{name: "jobs", summary: "list, start and cancel block jobs (stream, mirror, convert)", run: runJobs, subcommands: []string{"start", "cancel"}})
}

const defaultControlSocket = "/run/qtune/control.sock"

func runJobs(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "start":
			return runJobsStart(ctx, args[1:], stdout, stderr)
		case "cancel":
			return runJobsCancel(ctx, args[1:], stdout, stderr)
		}
	}
	fs := newFlagSet("qtune jobs")
	fs.SetOutput(stderr)
	sock := fs.String("socket", defaultControlSocket, "the agent's control socket")
	watch := fs.Bool("watch", false, "redraw every second until interrupted")
	all := fs.Bool("all", false, "also list jobs that ended")
	asJSON := fs.Bool("json", false, "print the jobs as JSON")
	inFleet := fs.Bool("fleet", false, "list the fleet budgets' slots held and copies waiting, every host's, as etcd has them")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: qtune jobs [--watch] [--all] [--json] [--fleet] [--socket PATH]\n       qtune jobs start stream|mirror|convert VM DISK [flags]\n       qtune jobs cancel ID")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	c := controlClient(*sock)
	// Each view is one document fetched from the agent, printed as JSON
	// or as a table, again every second with --watch.
	path, doc, show := "/v1/jobs", any(&[]api.Job{}), func(w io.Writer, doc any) {
		printJobs(w, *doc.(*[]api.Job), *all || !*watch, time.Now())
	}
	if *inFleet {
		path, doc, show = "/v1/fleet", any(&api.Fleet{}), func(w io.Writer, doc any) {
			printFleet(w, *doc.(*api.Fleet), time.Now())
		}
	}
	for {
		if err := c.do(ctx, http.MethodGet, path, nil, doc); err != nil {
			fmt.Fprintf(stderr, "qtune jobs: %v\n", err)
			return exitFailure
		}
		if *asJSON {
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			enc.Encode(doc)
			return exitOK
		}
		var buf bytes.Buffer
		if *watch {
			buf.WriteString("\x1b[H\x1b[2J")
		}
		show(&buf, doc)
		stdout.Write(buf.Bytes())
		if !*watch {
			return exitOK
		}
		select {
		case <-ctx.Done():
			return exitOK
		case <-time.After(time.Second):
		}
	}
}

// printJobs draws one line per job with a progress bar.
func printJobs(w io.Writer, jobs []api.Job, ended bool, now time.Time) {
	fmt.Fprintf(w, "%-44s %-7s %-20s %-9s %-24s %6s %11s %8s\n", "ID", "KIND", "VM/DISK", "STATE", "PROGRESS", "", "RATE", "ETA")
	shown := 0
	for _, j := range jobs {
		if j.State.Final() && !ended {
			continue
		}
		shown++
		p := j.Progress
		pct := p.Percent()
		if j.State == api.JobDone {
			pct = 100
		}
		rate, eta := "-", "-"
		if !j.State.Final() && p.Rate > 0 {
			rate = humanBytes(p.Rate) + "/s"
		}
		if !j.State.Final() && p.ETA > 0 {
			eta = p.ETA.String()
		}
		fmt.Fprintf(w, "%-44s %-7s %-20s %-9s %s %5.1f%% %11s %8s\n", j.ID, j.Kind, j.VM+"/"+j.Disk, j.State, bar(pct, 24), pct, rate, eta)
		if note := jobNote(j); note != "" {
			fmt.Fprintf(w, "    %s\n", note)
		}
		for _, k := range j.Kept {
			fmt.Fprintf(w, "    kept: %s\n", keptLine(k))
		}
	}
	if shown == 0 {
		fmt.Fprintln(w, "(no jobs)")
	}
}

// printFleet draws the slots held fleet-wide, then the copies waiting in
// the order they will be served.
func printFleet(w io.Writer, f api.Fleet, now time.Time) {
	lease := "held"
	if !f.LeaseOK {
		lease = "LOST (this host's copies run at the floor speed)"
	}
	fmt.Fprintf(w, "host %s, fleet lease %s\n\n", f.Host, lease)
	row := func(s api.FleetSlot) {
		speed := "unbounded"
		if s.Speed > 0 {
			speed = humanBytes(float64(s.Speed)) + "/s"
		}
		fmt.Fprintf(w, "%-12s %-16s %-24s %-8s %11s %-20s %s\n", s.Budget, s.Host, s.VM+"/"+s.Disk, s.Kind, speed,
			s.Since.Local().Format("2006-01-02 15:04:05"), now.Sub(s.Since).Round(time.Second))
	}
	fmt.Fprintf(w, "%-12s %-16s %-24s %-8s %11s %-20s %s\n", "BUDGET", "HOST", "VM/DISK", "KIND", "SPEED", "SINCE", "FOR")
	for _, s := range f.Held {
		row(s)
	}
	if len(f.Held) == 0 {
		fmt.Fprintln(w, "(no slots held)")
	}
	fmt.Fprintln(w, "\nwaiting, in the order they will be served:")
	for _, s := range f.Waiting {
		row(s)
	}
	if len(f.Waiting) == 0 {
		fmt.Fprintln(w, "(none)")
	}
}

// jobNote is the one thing an operator needs to know about a job now.
func jobNote(j api.Job) string {
	switch {
	case j.State == api.JobFailed || j.State == api.JobCancelled:
		return strings.TrimSpace("error: " + j.Error)
	case j.Waiting != "":
		return "waiting: " + j.Waiting
	case j.State == api.JobDone && j.Pivoted:
		return "now on " + j.Dest
	case j.Dest != "":
		return j.Source + " -> " + j.Dest
	}
	return ""
}

// keptLine tells an image a job left on disk: where, how much space it
// takes, and whether deleting it frees that space now.
func keptLine(k api.Kept) string {
	s := k.Path + " (" + humanBytes(float64(k.Bytes)) + ")"
	if k.Open {
		return s + ": still open in QEMU; deleting it frees its space only once the VM stops"
	}
	return s + ": no longer open: free to delete"
}

func bar(pct float64, width int) string {
	n := int(pct / 100 * float64(width))
	n = max(0, min(n, width))
	return "[" + strings.Repeat("#", n) + strings.Repeat(".", width-n) + "]"
}

func humanBytes(v float64) string {
	switch {
	case v >= 1<<30:
		return fmt.Sprintf("%.1fGiB", v/(1<<30))
	case v >= 1<<20:
		return fmt.Sprintf("%.1fMiB", v/(1<<20))
	case v >= 1<<10:
		return fmt.Sprintf("%.1fKiB", v/(1<<10))
	}
	return fmt.Sprintf("%.0fB", v)
}

func runJobsStart(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("qtune jobs start")
	fs.SetOutput(stderr)
	sock := fs.String("socket", defaultControlSocket, "the agent's control socket")
	speed := fs.String("speed", "", "speed cap, e.g. 50MiB (per second; default unlimited)")
	base := fs.String("base", "", "stream: flatten down to this backing image (default: all of the chain)")
	targetDir := fs.String("target-dir", "", "mirror: the directory to move the disk into (one of the agent's mirror_dirs)")
	format := fs.String("format", "", "mirror, convert: qcow2 or raw (default: the source's)")
	cluster := fs.String("cluster-size", "", "mirror, convert: qcow2 cluster size, e.g. 64KiB")
	prealloc := fs.String("preallocation", "", "mirror, convert: off, metadata, falloc or full")
	extL2 := fs.String("extended-l2", "", "mirror, convert: on or off")
	compression := fs.String("compression-type", "", "mirror, convert: zlib or zstd")
	copyMode := fs.String("copy-mode", "background", "mirror, convert: background or write-blocking (refused unless the agent sets jobs.allow_write_blocking)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: qtune jobs start stream|mirror|convert VM DISK [flags]")
		fs.PrintDefaults()
	}
	// Flags may come after the positional arguments.
	var pos []string
	for len(args) > 0 {
		if err := fs.Parse(args); err != nil {
			return exitUsage
		}
		args = fs.Args()
		if len(args) > 0 {
			pos, args = append(pos, args[0]), args[1:]
		}
	}
	req, err := jobRequest(pos, *speed, *base, *targetDir, *copyMode, layoutFlags{*format, *cluster, *prealloc, *extL2, *compression})
	if err != nil {
		fmt.Fprintf(stderr, "qtune jobs start: %v\n", err)
		return exitUsage
	}
	var p api.Planned
	if err := controlClient(*sock).do(ctx, http.MethodPost, "/v1/jobs", req, &p); err != nil {
		fmt.Fprintf(stderr, "qtune jobs start: %v\n", err)
		return exitFailure
	}
	switch {
	case p.Job == nil:
		fmt.Fprintf(stdout, "%s: %s\n", p.Result, p.Reason)
	case p.Result == api.ResultApplied:
		fmt.Fprintf(stdout, "planned %s (watch it with qtune jobs --watch)\n", p.Job.ID)
	default:
		fmt.Fprintf(stdout, "%s %s: %s\n", p.Result, p.Job.ID, p.Reason)
	}
	return exitOK
}

type layoutFlags struct{ format, cluster, prealloc, extL2, compression string }

func jobRequest(pos []string, speed, base, targetDir, copyMode string, lf layoutFlags) (api.JobRequest, error) {
	if len(pos) != 3 {
		return api.JobRequest{}, errors.New("want stream|mirror|convert VM DISK")
	}
	kind := policy.Knob(pos[0])
	if !jobs.Known(kind) {
		return api.JobRequest{}, fmt.Errorf("%q is not stream, mirror or convert", pos[0])
	}
	req := api.JobRequest{Kind: kind, Target: api.Target{VM: pos[1], Disk: pos[2]}, Base: base, TargetDir: targetDir, CopyMode: copyMode}
	var errs []string
	size := func(name, v string) uint64 {
		if v == "" {
			return 0
		}
		n, err := policy.ParseSize(v)
		if err != nil {
			errs = append(errs, fmt.Sprintf("--%s: %v", name, err))
		}
		return n
	}
	req.Speed = size("speed", speed)
	req.Layout = policy.Layout{Format: lf.format, ClusterSize: size("cluster-size", lf.cluster), Preallocation: lf.prealloc, CompressionType: lf.compression}
	switch lf.extL2 {
	case "":
	case "on", "off":
		on := lf.extL2 == "on"
		req.Layout.ExtendedL2 = &on
	default:
		errs = append(errs, "--extended-l2 is on or off")
	}
	if kind == policy.KnobMirror && targetDir == "" {
		errs = append(errs, "mirror needs --target-dir")
	}
	if kind != policy.KnobStream && base != "" {
		errs = append(errs, "--base is for stream")
	}
	if copyMode != "background" && copyMode != "write-blocking" {
		errs = append(errs, "--copy-mode is background or write-blocking")
	}
	if len(errs) > 0 {
		return req, errors.New(strings.Join(errs, "; "))
	}
	return req, nil
}

func runJobsCancel(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("qtune jobs cancel")
	fs.SetOutput(stderr)
	sock := fs.String("socket", defaultControlSocket, "the agent's control socket")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(stderr, "usage: qtune jobs cancel [--socket PATH] ID")
		return exitUsage
	}
	var j api.Job
	if err := controlClient(*sock).do(ctx, http.MethodPost, "/v1/jobs/"+fs.Arg(0)+"/cancel", nil, &j); err != nil {
		fmt.Fprintf(stderr, "qtune jobs cancel: %v\n", err)
		return exitFailure
	}
	fmt.Fprintf(stdout, "cancel asked for %s (%s); the VM stays on %s\n", j.ID, j.State, j.Source)
	return exitOK
}

// control is a client of the agent's control socket.
type control struct {
	sock   string
	client *http.Client
}

func controlClient(sock string) *control {
	return &control{sock: sock, client: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		}}}}
}

func (c *control) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://qtune"+path, rd)
	if err != nil {
		return err
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return fmt.Errorf("control socket %s (is the agent running, and are you root or in its control group?): %w", c.sock, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var ce api.ControlError
		if json.NewDecoder(resp.Body).Decode(&ce) == nil && ce.Error != "" {
			return fmt.Errorf("%s: %s", resp.Status, ce.Error)
		}
		return fmt.Errorf("agent: %s", resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}
