package main

import (
	"regexp"
	"sort"
	"strings"

	"github.com/qtune/qtune/config"
	"github.com/qtune/qtune/internal/manpage"
	"github.com/qtune/qtune/policy"
)

// configPage is qtune-agent.hcl(5): every setting of the schema agent.hcl
// decodes into, described by the comments of the annotated example.
func configPage(example string) *manpage.Page {
	p := newPage("qtune-agent.hcl", 5)
	p.SH("name")
	p.P("qtune-agent.hcl - configuration of the qtune agent")
	p.SH("synopsis")
	p.P("/etc/qtune/agent.hcl")
	p.SH("description")
	p.P("The agent (qtune agent --config FILE, the qtune service) reads one HCL file. Every setting is optional; " +
		"flags given to qtune agent override the file. SIGHUP (systemctl reload qtune) reloads log_level and the " +
		"policy directory; other settings take effect at the next start. Durations are Go durations (\"10s\", \"5m\"), " +
		"sizes take IEC units (\"1GiB\").")
	p.SH("settings")
	desc := exampleComments(example)
	for _, k := range manpage.HCLKeys(config.FileSchema()) {
		d := desc[k.Path]
		text := d.text
		if k.Block {
			text = strings.TrimSpace("A block. " + text)
		}
		if text != "" && !strings.HasSuffix(text, ".") {
			text += "."
		}
		if d.value != "" {
			text += " Example: " + k.Path[strings.LastIndex(k.Path, ".")+1:] + " = " + d.value
		}
		p.Item(k.Path, k.Type, text)
	}
	if example != "" {
		p.SH("example")
		p.P("The file a package installs, with the defaults (but dry_run = true: a fresh install changes nothing):")
		p.Verbatim(example)
	}
	p.SH("see also")
	p.P("qtune(1), qtune-policy(5)")
	return p
}

var (
	keyLine   = regexp.MustCompile(`^\s*(?:#\s*)?([a-z0-9_]+)\s*=`)
	blockLine = regexp.MustCompile(`^\s*(?:#\s*)?([a-z0-9_]+)\s*(?:"[^"]*"\s*)?\{\s*$`)
	trailing  = regexp.MustCompile(`\s#\s+(.*)$`)
)

// exampleSetting is what an annotated agent.hcl says of one setting.
type exampleSetting struct{ text, value string }

// exampleComments maps each setting of an annotated agent.hcl to its
// comment (the one at the end of its line, else the comment lines right
// above it or above its block) and its value there.
func exampleComments(text string) map[string]exampleSetting {
	out := map[string]exampleSetting{}
	var above []string
	block := ""
	for _, l := range strings.Split(text, "\n") {
		t := strings.TrimSpace(l)
		switch {
		case t == "}" || t == "# }":
			block, above = "", nil
		case blockLine.MatchString(l):
			block = blockLine.FindStringSubmatch(l)[1]
			out[block] = exampleSetting{text: strings.Join(above, " ")}
			above = nil
		case keyLine.MatchString(l):
			name := keyLine.FindStringSubmatch(l)[1]
			if block != "" {
				name = block + "." + name
			}
			d := exampleSetting{text: strings.Join(above, " ")}
			d.value = strings.SplitN(l, "=", 2)[1]
			if m := trailing.FindStringSubmatchIndex(d.value); m != nil {
				d.text = d.value[m[2]:m[3]]
				d.value = d.value[:m[0]]
			}
			d.value = strings.TrimSpace(d.value)
			if prev, seen := out[name]; !seen || prev.text == "" {
				out[name] = d
			}
			above = nil
		case strings.HasPrefix(t, "#"):
			above = append(above, strings.TrimSpace(strings.TrimPrefix(t, "#")))
		default:
			above = nil
		}
	}
	return out
}

// policyAttrHelp describes each attribute of a rule and of its match
// block; a test fails when the schema has one this map lacks.
var policyAttrHelp = map[string]string{
	"when":         "condition (expression over the metrics below) that makes the rule fire once it holds for `for`; required",
	"release_when": "a different way out: once firing, the rule lets go when this holds for clear_after, instead of when `when` turns false",
	"for":          "how long `when` must hold before the rule fires (duration)",
	"clear_after":  "how long the way out must hold before the rule lets go and the knob goes back (duration)",
	"cooldown":     "least time between two changes by this rule on the same knob (duration); a change refused inside it waits",
	"mode":         "\"enforce\" (act) or \"recommend\" (decide and report only)",
	"priority":     "which of two rules wanting the same knob wins (higher wins)",
	"window":       "local time window in which the rule may act, e.g. \"01:00-05:00\"",
	"persist":      "also write the change into the domain's libvirt definition, so it outlives a restart of the VM",
	"allow_unsafe": "allow a setting qtune refuses by default as a risk to the guest's data, such as cache no_flush",
	"description":  "free text for the reader of the policy: what the rule is for",
	"domain":       "match: VM name (glob)",
	"disk":         "match: disk target name, e.g. vda (glob)",
	"format":       "match: image format (qcow2, raw)",
	"path":         "match: image path (glob)",
	"meta":         "match: a map of key = glob the VM's metadata (libvirt <metadata>) must match",
}

// policyPage is qtune-policy(5): the file format from the parser's
// schema, every action kind with its attributes, every metric.
func policyPage() *manpage.Page {
	p := newPage("qtune-policy", 5)
	p.SH("name")
	p.P("qtune-policy - qtune tuning policy files")
	p.SH("synopsis")
	p.Verbatim("/etc/qtune/policy.d/*.hcl\n\nrule \"NAME\" {\n  when = EXPRESSION\n  ...\n  match { ... }\n  ACTION { ... }\n}")
	p.SH("description")
	p.P("A policy file holds rule blocks. Each rule is evaluated on every disk qtune samples: when its condition holds " +
		"(for the time `for` says), it fires and its one action sets a knob of that disk; when the way out holds for clear_after " +
		"it lets go and the knob goes back to what it was. A package installs no policy: the directory starts empty, and the " +
		"examples are under /usr/share/doc/qtune/examples/policy.d. qtune policy check validates files (every problem with " +
		"file:line:col), qtune policy test runs their tests, qtune plan shows what a new policy would change.")
	p.SH("rule attributes")
	for _, a := range policy.RuleAttributes() {
		p.Item(a, "", policyAttrHelp[a])
	}
	p.SH("match block")
	p.P("Optional; without it a rule applies to every disk.")
	for _, a := range policy.MatchAttributes() {
		p.Item(a, "", policyAttrHelp[a])
	}
	p.SH("actions")
	p.P("Exactly one action block per rule: it names the knob the rule owns.")
	for _, k := range policy.ActionKinds() {
		if k.Driven { // set by the agent itself, never written in a rule
			continue
		}
		what := "holds a setting while the rule fires and reverts it after"
		if k.Job {
			what = "starts a block job once; it is never reverted"
		}
		p.Item(string(k.Knob), "{ "+strings.Join(k.Attrs, ", ")+" }", what+".")
	}
	p.SH("metrics")
	p.P("A condition may read these; an unknown value makes an expression unknown, which never fires a rule nor counts as the condition turning false.")
	for _, m := range policy.Metrics {
		unit := m.Type.FriendlyName()
		if m.Unit != "" {
			unit += ", " + m.Unit
		}
		p.Item(m.Name, unit, m.Help)
	}
	p.SH("window functions")
	p.P("fn(metric, \"duration\"), e.g. avg_over(disk.write_iops, \"1m\").")
	for _, n := range sortedKeys(policy.WindowFuncs) {
		p.Item(n, "", policy.WindowFuncs[n])
	}
	p.SH("see also")
	p.P("qtune(1), qtune-agent.hcl(5)")
	return p
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
