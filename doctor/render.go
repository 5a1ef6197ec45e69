package doctor

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
)

// WriteJSON writes the reports as one JSON document.
func WriteJSON(w io.Writer, rs []Report) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(struct {
		Worst   Severity `json:"worst"`
		Reports []Report `json:"reports"`
	}{Worst(rs), rs})
}

// WriteText writes a table per report: every check with its severity and
// summary, then for each problem its evidence, fix, repair and automation.
func WriteText(w io.Writer, rs []Report) error {
	for i, r := range rs {
		if i > 0 {
			fmt.Fprintln(w)
		}
		fmt.Fprintf(w, "%s (worst: %s)\n", r.Target, r.Worst())
		for _, n := range r.Notes {
			fmt.Fprintf(w, "  note: %s\n", n)
		}
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  CHECK\tSEVERITY\tSUMMARY")
		for _, f := range r.Findings {
			fmt.Fprintf(tw, "  %s\t%s\t%s\n", f.Check, f.Severity, f.Summary)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		for _, n := range r.NotRun {
			fmt.Fprintf(w, "  not run: %s (%s)\n", strings.Join(n.Checks, ", "), n.Why)
		}
		for _, f := range r.Findings {
			if f.Severity > OK {
				writeDetail(w, f)
			}
		}
	}
	return nil
}

func writeDetail(w io.Writer, f Finding) {
	fmt.Fprintf(w, "\n  %s [%s]\n", f.Check, f.Severity)
	if len(f.Evidence) > 0 {
		fmt.Fprintf(w, "    seen:     %s\n", evidence(f.Evidence))
	}
	for _, p := range f.Fields {
		where := ""
		if p.Bytes != "" {
			where = " (bytes " + p.Bytes + ")"
		}
		fmt.Fprintf(w, "    field:    %s%s = %s: %s [%s]\n", p.Field, where, p.Value, p.Why, p.Severity)
	}
	if f.Fix != "" {
		fmt.Fprintf(w, "    fix:      %s\n", f.Fix)
	}
	if f.Repair != "" {
		fmt.Fprintf(w, "    repair:   %s\n", f.Repair)
	}
	if f.Automate != "" {
		fmt.Fprintf(w, "    automate: %s\n", strings.ReplaceAll(f.Automate, "\n", "\n              "))
	}
	if len(f.Salvage) > 0 {
		fmt.Fprintf(w, "    salvage:  %s\n", strings.Join(f.Salvage, "\n              "))
	}
}

func evidence(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + m[k]
	}
	return strings.Join(parts, " ")
}

// WriteHandbook writes docs/doctor.md from the table.
func WriteHandbook(w io.Writer) error {
	var b strings.Builder
	b.WriteString("# qtune doctor: the checks\n\n")
	b.WriteString("Generated from doctor/checks.go by `qtune doctor --handbook`; do not edit.\n\n")
	b.WriteString("`qtune doctor` only reads. Severities: ok, info, warn, critical; the exit\n")
	b.WriteString("status is 0 for ok or info, 1 for warn, 2 for critical, 3 when a VM or an\n")
	b.WriteString("image could not be read at all.\n\n")
	b.WriteString("`--image` runs the image and host checks; `--qmp`, `--qmp-dir` and `--libvirt`\n")
	b.WriteString("sample each VM twice and add the live checks (the first ones below), then run\n")
	b.WriteString("the image checks on each disk's image with the cache in force. The agent runs\n")
	b.WriteString("them on every disk it samples, except `aio` and `failed_ops` and, of\n")
	b.WriteString("`cache_mode`, all but unsafe (its samples lack the guest's write cache and the\n")
	b.WriteString("error counters) and, under plain QEMU, `vm_io_error`; it exports the findings as\n")
	b.WriteString("`qtune_disk_finding{vm,disk,check,severity}`.\n\n")
	b.WriteString("Every report says which format qemu-img probed (`format`) and lists the checks\n")
	b.WriteString("that did not run on it and why (`not run:`; `not_run` in JSON): a check that did\n")
	b.WriteString("not run is never reported ok. When qemu-img cannot open a qcow2 image, the doctor\n")
	b.WriteString("reads the header itself, read-only, and judges every field (the `qcow2_*` checks);\n")
	b.WriteString("it also walks the header and L1/L2 tables beside every `qemu-img check` of an image\n")
	b.WriteString("not in use. `qcow2_salvage` prints the commands that copy out what the L2 tables\n")
	b.WriteString("still map; they read the image and write only new files. Exit status 3 is for an\n")
	b.WriteString("image that cannot be read at all (missing, no permission), not for a damaged one.\n")
	for _, c := range Checks {
		fmt.Fprintf(&b, "\n## `%s`: %s\n\n", c.Name, c.Title)
		fmt.Fprintf(&b, "- **What it means**: %s\n", c.Means)
		fmt.Fprintf(&b, "- **Why it matters**: %s\n", c.Matters)
		fmt.Fprintf(&b, "- **How to fix**: %s\n", c.Fix)
		fmt.Fprintf(&b, "- **Severity**: %s\n", c.Severity)
		if c.Repair != "" {
			fmt.Fprintf(&b, "\nRepair by hand (qtune never runs it):\n\n```sh\n%s\n```\n", c.Repair)
		}
		if c.Automate != "" {
			lang := "hcl"
			if strings.HasPrefix(c.Automate, "qtune ") {
				lang = "sh"
			}
			fmt.Fprintf(&b, "\nWhat qtune can do for you:\n\n```%s\n%s\n```\n", lang, c.Automate)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}
