package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"
)

const resultsHeader = `# qtune benchmarks

Regenerate with ` + "`make bench`" + ` (quick) or ` + "`make bench-full`" + `. Each
section is written by one benchmark of bench/ and replaced only when that
benchmark runs; every figure stands beside its baseline measured in the
same run on the same machine.
`

// updateResults replaces the sections given in path, keeps the others,
// and appends new ones at the end.
func updateResults(path string, sections map[string]string) error {
	old, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("read results: %w", err)
	}
	doc := string(old)
	if doc == "" {
		doc = resultsHeader
	}
	for _, name := range sectionOrder(sections) {
		doc = replaceSection(doc, name, sections[name])
	}
	return os.WriteFile(path, []byte(doc), 0o644)
}

func sectionOrder(sections map[string]string) []string {
	var names []string
	if _, ok := sections["machine"]; ok {
		names = append(names, "machine")
	}
	for _, b := range benchmarks {
		if _, ok := sections[b.name]; ok {
			names = append(names, b.name)
		}
	}
	return names
}

func replaceSection(doc, name, body string) string {
	begin, end := "<!-- bench:"+name+" -->", "<!-- /bench:"+name+" -->"
	block := begin + "\n" + strings.TrimSpace(body) + "\n" + end
	i := strings.Index(doc, begin)
	j := strings.Index(doc, end)
	if i < 0 || j < i {
		return strings.TrimRight(doc, "\n") + "\n\n" + block + "\n"
	}
	return doc[:i] + block + doc[j+len(end):]
}

// machineSection records what the figures were measured on.
func machineSection(ctx context.Context, full bool) string {
	mode := "quick"
	if full {
		mode = "full"
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "## Machine and run\n\n| | |\n| --- | --- |\n")
	fmt.Fprintf(&b, "| date | %s |\n", time.Now().UTC().Format("2006-01-02 15:04 UTC"))
	fmt.Fprintf(&b, "| mode | %s |\n", mode)
	fmt.Fprintf(&b, "| commit | %s |\n", firstLine(ctx, "git", "rev-parse", "--short", "HEAD"))
	fmt.Fprintf(&b, "| CPU cores | %d |\n", runtime.NumCPU())
	fmt.Fprintf(&b, "| memory | %s |\n", memTotal())
	fmt.Fprintf(&b, "| QEMU | %s |\n", firstLine(ctx, "qemu-system-x86_64", "--version"))
	fmt.Fprintf(&b, "| libvirt | %s |\n", firstLine(ctx, "libvirtd", "--version"))
	fmt.Fprintf(&b, "| load average at start | %s |\n", loadAvg())
	b.WriteString("\nThe machine may be shared with other work while a benchmark runs; the load average says how busy it was.\n")
	return b.String()
}

// runStamp says when and how one section was measured: sections are
// regenerated one at a time (-only), so the machine section's date need
// not be theirs.
func runStamp(ctx context.Context, full bool) string {
	mode := "quick"
	if full {
		mode = "full"
	}
	return fmt.Sprintf("_Measured %s, %s mode, commit %s, load average at the start %s on %d cores._",
		time.Now().UTC().Format("2006-01-02 15:04 UTC"), mode, firstLine(ctx, "git", "rev-parse", "--short", "HEAD"), loadAvg(), runtime.NumCPU())
}

func firstLine(ctx context.Context, name string, args ...string) string {
	out, err := exec.CommandContext(ctx, name, args...).Output()
	if err != nil {
		return "unknown (" + err.Error() + ")"
	}
	return strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0])
}

func memTotal() string {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return "unknown"
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "MemTotal:") {
			var kb uint64
			fmt.Sscanf(strings.TrimSpace(strings.TrimPrefix(l, "MemTotal:")), "%d", &kb)
			return fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
		}
	}
	return "unknown"
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	return strings.Join(strings.Fields(string(b))[:3], " ")
}
