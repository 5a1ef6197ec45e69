package doctor

import (
	"fmt"
	"path/filepath"
	"sort"
	"strings"
)

// Which checks read what: a check that does not apply to an image is
// left out of its findings and named in the report's not_run list, so
// no report says ok about something it did not look at.
var (
	// infoChecks read qemu-img info or check: nothing to say when
	// qemu-img cannot open the image.
	infoChecks = map[string]bool{"corrupt_bit": true, "check_corruptions": true, "check_leaks": true,
		"compressed_clusters": true, "dirty_bit": true, "backing_missing": true, "backing_depth": true,
		"internal_snapshots": true, "l2_coverage": true, "cluster_size": true, "layout": true, "encryption": true}
	// qcow2Checks read qcow2 metadata.
	qcow2Checks = map[string]bool{"corrupt_bit": true, "dirty_bit": true, "compressed_clusters": true,
		"internal_snapshots": true, "l2_coverage": true, "cluster_size": true, "layout": true}
	// checkChecks read qemu-img check's result.
	checkChecks = map[string]bool{"check_corruptions": true, "check_leaks": true, "compressed_clusters": true}
)

// NotRun is a group of checks that did not run on an image, and why.
type NotRun struct {
	Why    string   `json:"why"`
	Checks []string `json:"checks"`
}

// gate says why a check does not apply to an image ("" when it does).
func gate(name string, f ImageFacts) string {
	format := f.Info.Format
	switch {
	case name == "format":
		return ""
	case strings.HasPrefix(name, "qcow2_"):
		if f.Header == nil {
			if format == "qcow2" {
				return "the doctor reads a qcow2 itself when qemu-img cannot open it or beside qemu-img check, which was skipped (--no-check, not due, or the image is in use)"
			}
			return "qcow2 header checks, the image is " + formatName(f)
		}
		return headerGate(name, f)
	case f.OpenErr != nil && infoChecks[name]:
		return "qemu-img cannot open the image"
	case qcow2Checks[name] && format != "qcow2":
		return "qcow2 only; the image is " + formatName(f)
	case checkChecks[name] && f.Check == nil && f.CheckErr == nil:
		switch {
		case f.CheckUnsupported:
			return "qemu-img check has no check for " + formatName(f)
		case chainBroken(f.Chain):
			return "qemu-img check cannot open a chain with a link missing"
		case f.Info.Encrypted:
			return "qemu-img check of an encrypted image needs its key, which the doctor does not read"
		}
		return "qemu-img check skipped (--no-check, or not due yet)"
	}
	return ""
}

// headerNeeds is the file length a header check's fields need.
var headerNeeds = map[string]uint64{"qcow2_size": 32, "qcow2_l1_table": 48, "qcow2_refcount_table": 60,
	"qcow2_snapshot_table": 72, "qcow2_features": 80}

// headerGate says why a header check could not judge the image.
func headerGate(name string, f ImageFacts) string {
	d := f.Header
	h := d.Header
	switch {
	case name == "qcow2_salvage":
		if f.OpenErr == nil && f.Info.Format == "qcow2" {
			return "qemu-img opens the image: qemu-img convert copies what it can"
		}
		return ""
	case name == "qcow2_header":
		return ""
	case name == "qcow2_cluster_bits" && h.Magic == qcow2Magic:
		return ""
	case name == "qcow2_features" && h.Version != 3:
		return "feature bits are a version 3 field"
	case d.FileSize < headerNeeds[name]:
		return "the file ends before these fields"
	case name == "qcow2_features":
		return ""
	case !h.clusterOK():
		return "cluster_bits is impossible: no table can be located"
	case name == "qcow2_l1_entries" && d.L1From != "header":
		return "the L1 table the header names cannot be read"
	}
	return ""
}

// collapseHeader writes the header checks as one qcow2_* when all of
// them are in names: a report about a vmdk needs no ten-name list.
func collapseHeader(names []string) []string {
	var rest []string
	for _, n := range names {
		if !strings.HasPrefix(n, "qcow2_") {
			rest = append(rest, n)
		}
	}
	if len(names)-len(rest) != len(headerChecks) {
		return names
	}
	return append([]string{"qcow2_*"}, rest...)
}

func formatName(f ImageFacts) string {
	if f.Info.Format == "" {
		return "of unknown format"
	}
	return f.Info.Format
}

// notRun lists the table's image checks that did not run, by reason.
func notRun(f ImageFacts) []NotRun {
	by := map[string][]string{}
	for _, c := range Checks {
		if c.Image == nil {
			continue
		}
		if why := gate(c.Name, f); why != "" {
			by[why] = append(by[why], c.Name)
		}
	}
	out := make([]NotRun, 0, len(by))
	for why, names := range by {
		out = append(out, NotRun{Why: why, Checks: collapseHeader(names)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Why < out[j].Why })
	return out
}

// gated wraps a table check so it says nothing where it does not apply;
// every image check goes through it, offline and live alike.
func gated(name string, fn func(ImageFacts) *Finding) func(ImageFacts) *Finding {
	return func(f ImageFacts) *Finding {
		if gate(name, f) != "" {
			return nil
		}
		return fn(f)
	}
}

// init puts the format and header checks in front of the image table
// (after the live checks, whatever order the files' init functions run
// in) and gates every image check.
func init() {
	at := len(Checks)
	for i, c := range Checks {
		if c.Name == "corrupt_bit" {
			at = i
			break
		}
	}
	mine := append(append([]Check{}, formatChecks...), headerChecks...)
	Checks = append(Checks[:at:at], append(mine, Checks[at:]...)...)
	for i := range Checks {
		if Checks[i].Image != nil {
			Checks[i].Image = gated(Checks[i].Name, Checks[i].Image)
		}
	}
}

// Formats whose names promise a header a raw image lacks.
var formatExtensions = map[string]string{".qcow2": "qcow2", ".qcow": "qcow", ".vmdk": "vmdk", ".vdi": "vdi",
	".vhd": "vpc", ".vhdx": "vhdx", ".qed": "qed"}

var formatChecks = []Check{{
	Name:     "format",
	Title:    "image format and what could be checked",
	Means:    "The format qemu-img info probes from the image's first bytes (no format is assumed), and whether qemu-img can open the image at all. qemu-img check verifies the metadata of qcow2, qed, vdi, vhdx, parallels and vmdk images; raw has no metadata, and for other formats (vpc, qcow, ...) qemu-img has no check.",
	Matters:  "An image qemu-img cannot open is one no VM can start from. An image whose integrity no check could verify is not known to be good: raw is raw, and any bytes probe as raw.",
	Fix:      "For an image qemu-img cannot open, read the qcow2_* findings and qcow2_salvage: they say which fields are broken and what can still be copied out. For a file that should not be raw, find where its header went (a backup, the VM's configuration).",
	Severity: "critical when qemu-img cannot open the image; warn when a file named like another format (.qcow2, .vmdk, ...) probes as raw; info when no integrity check exists for the format (raw, vpc, ...); ok otherwise.",
	Image: func(f ImageFacts) *Finding {
		if f.OpenErr != nil {
			ev := map[string]string{"qemu_img_error": f.OpenErr.Error(), "file_size": u(f.FileSize)}
			if f.Header != nil {
				ev["probed"] = "qcow2 (by its magic)"
				return &Finding{Severity: Critical, Summary: "qcow2 that qemu-img cannot open: its header is diagnosed field by field below", Evidence: ev}
			}
			return &Finding{Severity: Critical, Summary: "qemu-img cannot open the image, and it has no qcow2 magic for the doctor to read it by", Evidence: ev}
		}
		format := f.Info.Format
		ev := map[string]string{"format": format, "virtual_size": u(f.Info.VirtualSize)}
		switch {
		case format == "raw" && f.Header != nil:
			return &Finding{Severity: Critical, Summary: "probed as raw, but the rest of its header is a qcow2's: the magic was overwritten (diagnosed below)", Evidence: ev}
		case format == "raw":
			if want, ok := formatExtensions[strings.ToLower(filepath.Ext(f.Path))]; ok {
				return &Finding{Severity: Warn, Summary: fmt.Sprintf("named like %s but probed as raw: there is no %s header at its start", want, want), Evidence: ev}
			}
			return &Finding{Severity: Info, Summary: "probed as raw (no known image header): raw has no metadata, so nothing in it can be checked for integrity", Evidence: ev}
		case f.CheckUnsupported:
			return &Finding{Severity: Info, Summary: format + " (probed): qemu-img has no integrity check for it", Evidence: ev}
		}
		return &Finding{Severity: OK, Summary: format + " (probed by qemu-img info)", Evidence: ev}
	},
}}
