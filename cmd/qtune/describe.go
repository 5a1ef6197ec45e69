package main

import (
	"bytes"
	"context"
	"flag"
	"sort"
	"strings"
	"sync"
)

// The man page and the shell completion are built from the FlagSets the
// commands really parse with, so neither can fall behind a new flag.
// Every command makes its FlagSet through newFlagSet and parses it
// before doing anything else; describe runs each command with -h, which
// makes the flag package stop at parsing, and keeps the FlagSets made on
// the way.

var recorder struct {
	mu   sync.Mutex
	sets *[]*flag.FlagSet // non-nil while describe runs
}

// newFlagSet is flag.NewFlagSet for a qtune command.
func newFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	recorder.mu.Lock()
	if recorder.sets != nil {
		*recorder.sets = append(*recorder.sets, fs)
	}
	recorder.mu.Unlock()
	return fs
}

// cmdDoc is one command or subcommand as the man page and the
// completion see it.
type cmdDoc struct {
	path    []string // "policy", "check"
	summary string   // top-level commands only
	usage   string   // the usage lines the command prints for -h, if any
	flags   []*flag.Flag
}

func (d cmdDoc) name() string { return "qtune " + strings.Join(d.path, " ") }

// describe lists every visible command, then its subcommands.
func describe() []cmdDoc {
	names := make([]string, 0, len(commands))
	for n, c := range commands {
		if !c.hidden {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	var docs []cmdDoc
	for _, n := range names {
		c := commands[n]
		docs = append(docs, describeOne(c, []string{n}))
		for _, sub := range c.subcommands {
			docs = append(docs, describeOne(c, []string{n, sub}))
		}
	}
	return docs
}

func describeOne(c command, path []string) cmdDoc {
	var sets []*flag.FlagSet
	recorder.mu.Lock()
	recorder.sets = &sets
	recorder.mu.Unlock()
	defer func() {
		recorder.mu.Lock()
		recorder.sets = nil
		recorder.mu.Unlock()
	}()
	// A cancelled context: should a command ever act before parsing, its
	// first call fails at once instead of reaching an agent or a VM.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var out bytes.Buffer
	args := append(append([]string(nil), path[1:]...), "-h")
	c.run(ctx, args, &out, &out)
	d := cmdDoc{path: path, usage: usageLines(out.String())}
	if len(path) == 1 {
		d.summary = c.summary
	}
	want := "qtune " + strings.Join(path, " ")
	for _, fs := range sets {
		if fs.Name() != want {
			continue
		}
		fs.VisitAll(func(f *flag.Flag) { d.flags = append(d.flags, f) })
	}
	return d
}

// usageLines keeps what a command printed for -h before the flag
// defaults, less the flag package's own "Usage of" header; only a text
// that is a usage ("usage: ..."), not the output of a subcommand that
// takes no flags and ran (policy metrics) or failed on "-h" as a file.
func usageLines(s string) string {
	if i := strings.Index(s, "\n  -"); i >= 0 {
		s = s[:i+1]
	}
	s = strings.TrimPrefix(strings.TrimSpace(s), "Usage of ")
	if !strings.HasPrefix(s, "usage:") {
		return ""
	}
	var keep []string
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, "  -") {
			break
		}
		if strings.HasPrefix(l, "Usage of ") || strings.TrimSpace(l) == "" {
			continue
		}
		keep = append(keep, l)
	}
	return strings.Join(keep, "\n")
}
