package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/qtune/qtune/internal/buildinfo"
	"github.com/qtune/qtune/internal/manpage"
)

func init() {
	register(command{name: "__man", hidden: true, run: runMan})
}

// runMan writes the manual pages qtune(1), qtune-agent.hcl(5) and
// qtune-policy(5) into a directory; the package build runs it.
func runMan(_ context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("qtune __man", flag.ContinueOnError)
	fs.SetOutput(stderr)
	example := fs.String("config-example", "", "annotated agent.hcl whose comments describe each setting")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(stderr, "usage: qtune __man [--config-example FILE] DIR")
		return exitUsage
	}
	var exampleText string
	if *example != "" {
		b, err := os.ReadFile(*example)
		if err != nil {
			fmt.Fprintf(stderr, "qtune __man: %v\n", err)
			return exitFailure
		}
		exampleText = string(b)
	}
	pages := map[string]*manpage.Page{
		"qtune.1":           commandPage(describe()),
		"qtune-agent.hcl.5": configPage(exampleText),
		"qtune-policy.5":    policyPage(),
	}
	for name, p := range pages {
		if err := os.WriteFile(filepath.Join(fs.Arg(0), name), []byte(p.String()), 0o644); err != nil {
			fmt.Fprintf(stderr, "qtune __man: %v\n", err)
			return exitFailure
		}
	}
	return exitOK
}

// newPage dates a page by SOURCE_DATE_EPOCH when the build sets it, so
// that two builds of one commit write the same page.
func newPage(name string, section int) *manpage.Page {
	t := time.Now()
	if s, err := strconv.ParseInt(os.Getenv("SOURCE_DATE_EPOCH"), 10, 64); err == nil {
		t = time.Unix(s, 0)
	}
	return manpage.New(name, section, t.UTC().Format("2006-01-02"), "qtune "+buildinfo.Get().Version, "qtune manual")
}

// commandPage is qtune(1): every command and subcommand with its flags.
func commandPage(docs []cmdDoc) *manpage.Page {
	p := newPage("qtune", 1)
	p.SH("name")
	p.P("qtune - live tuning of KVM/QEMU VM disks")
	p.SH("synopsis")
	p.Verbatim("qtune COMMAND [FLAGS] [ARGUMENTS]\nqtune version | --version\nqtune help")
	p.SH("description")
	p.P("qtune reads the block-device statistics of KVM/QEMU virtual machines over libvirt or plain QEMU QMP, " +
		"evaluates tuning policies on them and live-tunes their disks: I/O throttles, cache mode, the qcow2 L2 cache, " +
		"and block jobs (stream, mirror, convert). The agent (qtune agent) runs as the systemd service qtune.service; " +
		"the other commands inspect it, check policies, and read VMs and images directly.")
	p.P("Flags may be written with one dash or two (-json or --json). A flag taking a value takes it as --flag VALUE or --flag=VALUE.")
	p.SH("commands")
	for _, d := range docs {
		p.SS(d.name())
		if d.summary != "" {
			p.P(d.summary + ".")
		}
		if d.usage != "" {
			p.Verbatim(d.usage)
		}
		if len(d.path) > 1 && d.usage == "" && len(d.flags) == 0 {
			p.P("No flags; its arguments are in the usage of qtune " + d.path[0] + " above.")
		}
		for _, f := range d.flags {
			arg, usage := flag.UnquoteUsage(f)
			p.Item(dashed(f.Name), strings.ToUpper(arg), usage+defaultText(f))
		}
	}
	p.SH("exit status")
	p.P("0 on success, 1 when the command failed, 2 for a usage error. qtune doctor has its own: " +
		"0 ok or info, 1 warn, 2 critical, 3 a VM or image could not be read.")
	p.SH("files")
	p.Item("/etc/qtune/agent.hcl", "", "the agent's configuration; see qtune-agent.hcl(5).")
	p.Item("/etc/qtune/policy.d/", "", "the policy directory the agent loads (*.hcl); see qtune-policy(5).")
	p.Item("/var/lib/qtune/", "", "the state store: knobs qtune changed, their original values, the decision log.")
	p.Item("/run/qtune/control.sock", "", "the agent's control socket for qtune jobs.")
	p.Item("/usr/share/doc/qtune/examples/", "", "example policies with their tests, Prometheus rules and a Grafana dashboard.")
	p.SH("see also")
	p.P("qtune-agent.hcl(5), qtune-policy(5), systemctl(1), virsh(1), qemu-img(1)")
	return p
}

// defaultText names a flag's default when it says something.
func defaultText(f *flag.Flag) string {
	switch f.DefValue {
	case "", "false", "0", "0s", "[]":
		return ""
	}
	return " (default: " + f.DefValue + ")"
}
