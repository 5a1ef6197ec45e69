package doctor

import (
	"fmt"
	"sort"
	"strings"
)

// What to do with an image whose header is broken, for every header
// check: nothing that writes to it.
const keepImage = " Never repair the image itself (qemu-img check -r, amend, or editing its bytes): keep it as it is, copy it (cp --sparse=always IMAGE COPY) and work on the copy; qcow2_salvage says which guest data can still be copied out and how."

// headerChecks judge a qcow2 image the doctor read itself (ImageFacts.
// Header): when qemu-img cannot open it, and beside qemu-img check.
var headerChecks = []Check{
	{
		Name:     "qcow2_header",
		Title:    "qcow2 header fields",
		Means:    "The fixed header: magic, version (2 or 3), header length (v3: at least 104 bytes, a multiple of 8, inside the first cluster), the file being long enough to hold it, the backing file name's place and length, the encryption method and the refcount width.",
		Matters:  "QEMU refuses to open an image with any of these wrong; the data behind it is usually intact.",
		Fix:      "If only the header was overwritten, a copy with the right values in the copied header opens again; the values of a qcow2 made by the same qemu-img version are a guide." + keepImage,
		Severity: "critical for each impossible field.",
		Image:    fieldCheck("qcow2_header", "magic, version, length and header fields valid"),
	},
	{
		Name:     "qcow2_cluster_bits",
		Title:    "qcow2 cluster size",
		Means:    "cluster_bits (header bytes 20-23) sets the cluster size, 2^9 to 2^21 bytes; every table offset is in clusters.",
		Matters:  "With an impossible cluster size no table of the image can be located, by QEMU or by the doctor.",
		Fix:      "qemu-img create makes 64 KiB clusters (cluster_bits 16) unless told otherwise: a copy with cluster_bits 16 in its header is worth a try." + keepImage,
		Severity: "critical when out of range.",
		Image:    fieldCheck("qcow2_cluster_bits", "cluster_bits in range"),
	},
	{
		Name:     "qcow2_size",
		Title:    "qcow2 virtual size",
		Means:    "The virtual size (header bytes 24-31) against what an L1 table can map with this cluster size.",
		Matters:  "A size no L1 table can map means the field was overwritten; QEMU refuses the image.",
		Fix:      "The virtual size the VM's configuration or a backup records is the value to put in a copy." + keepImage,
		Severity: "critical when impossible.",
		Image:    fieldCheck("qcow2_size", "virtual size mappable"),
	},
	{
		Name:     "qcow2_l1_table",
		Title:    "qcow2 L1 table location",
		Means:    "l1_table_offset and l1_size (header bytes 40-47, 36-39): cluster-aligned, after the header cluster, inside the file, at most 32 MiB, large enough for the virtual size.",
		Matters:  "The L1 table is the root of the guest data's map; without it nothing can be read through the image.",
		Fix:      "The doctor looks for the L1 table in the file when its offset is broken; when it finds exactly one, qcow2_salvage gives the offset to put in a copy's header and the dd commands that copy the data out." + keepImage,
		Severity: "critical when broken.",
		Image:    fieldCheck("qcow2_l1_table", "L1 table inside the file"),
	},
	{
		Name:     "qcow2_refcount_table",
		Title:    "qcow2 refcount table",
		Means:    "refcount_table_offset and refcount_table_clusters (bytes 48-55, 56-59): present, cluster-aligned, after the header, inside the file, at most 8 MiB, not overlapping the L1 table; and each refcount block it points at inside the file.",
		Matters:  "Refcounts say which clusters are in use: with them wrong, the next write can overwrite live data. Reading is not affected.",
		Fix:      "Guest data does not depend on refcounts: copy it out (qcow2_salvage), or on a copy of the image let qemu-img check -r all rebuild them." + keepImage,
		Severity: "critical when broken.",
		Image:    fieldCheck("qcow2_refcount_table", "refcount table and blocks inside the file"),
	},
	{
		Name:     "qcow2_snapshot_table",
		Title:    "qcow2 internal snapshot table",
		Means:    "nb_snapshots and snapshots_offset (bytes 60-63, 64-71): at most 65536, the table cluster-aligned, every entry and each snapshot's L1 table inside the file, not overlapping the L1 or refcount table.",
		Matters:  "QEMU reads the snapshot table at open and refuses an image whose table is broken, although the active disk's data does not depend on it.",
		Fix:      "On a copy, setting nb_snapshots and snapshots_offset to 0 drops the internal snapshots and lets the active layer open; the snapshots' own data is then lost in the copy only." + keepImage,
		Severity: "critical when broken.",
		Image:    fieldCheck("qcow2_snapshot_table", "snapshot table inside the file"),
	},
	{
		Name:     "qcow2_features",
		Title:    "qcow2 feature bits and compression type",
		Means:    "incompatible_features (bytes 72-79): no unknown bits (named from the image's feature name table), the corrupt bit (1), the dirty bit (0, only with lazy refcounts), an external data file (2) named by its extension, extended L2 (4) with clusters of 16 KiB or more; compression_type (byte 104) zlib or zstd and consistent with bit 3.",
		Matters:  "Unknown incompatible bits make every QEMU refuse the image; the corrupt bit means QEMU already found its metadata inconsistent.",
		Fix:      "An unknown bit set by accident (a flipped bit, an overwrite) can be cleared in a copy; a corrupt image is for qcow2_salvage or a check of a copy." + keepImage,
		Severity: "critical for unknown or inconsistent bits and the corrupt bit; warn for the dirty bit with lazy refcounts.",
		Image:    fieldCheck("qcow2_features", "feature bits known and consistent"),
	},
	{
		Name:     "qcow2_extensions",
		Title:    "qcow2 header extensions",
		Means:    "The extensions between the header and the backing file name (or the end of the first cluster): each within that space, the feature name table in 48-byte entries, the bitmaps and LUKS extensions of their fixed sizes.",
		Matters:  "QEMU refuses an image whose extensions run past their space.",
		Fix:      "An overwritten extension area can be ended in a copy by writing four zero bytes (the end marker) where the header ends." + keepImage,
		Severity: "critical when malformed.",
		Image:    fieldCheck("qcow2_extensions", "header extensions well formed"),
	},
	{
		Name:     "qcow2_l1_entries",
		Title:    "qcow2 L1 entries",
		Means:    "Each entry of the active L1 table points at an L2 table: reserved bits clear, cluster-aligned, not into the header, the L1 or the refcount table, the whole table inside the file, no two entries at the same table; and each L2 entry's data cluster lies inside the file (qemu-img check misses an image cut short: QEMU reads the missing part as zeros).",
		Matters:  "A bad entry loses the guest range it maps (512 MiB with 64 KiB clusters); a truncated file loses every table past its end.",
		Fix:      "The ranges of the good entries can still be copied out (qcow2_salvage)." + keepImage,
		Severity: "critical for each kind of bad entry.",
		Image:    fieldCheck("qcow2_l1_entries", "every L1 entry points at an L2 table inside the file"),
	},
	{
		Name:     "qcow2_salvage",
		Title:    "what of a qcow2 qemu-img cannot open can still be saved",
		Means:    "The doctor walks the L1 table (from the header, or found by scanning the first 64 MiB when the header's offset is broken) and every L2 table it can read, and lists the guest ranges that still map to data inside the file.",
		Matters:  "qemu-img convert cannot copy from an image qemu-img cannot open; the mapped ranges can be copied with dd into a new raw file, reading the image only.",
		Fix:      "Run the commands it prints: they create a new raw file (give it room for the virtual size) and read the image only. Compressed clusters cannot be copied this way; ranges the L2 tables do not map read as zeros (or come from the backing file, copied first).",
		Severity: "info (the damage is in the other findings); critical when no L1 table can be read or found.",
		Image:    salvageFinding,
	},
}

// fieldCheck reports the problems the diagnosis filed under name.
func fieldCheck(name, fine string) func(ImageFacts) *Finding {
	return func(f ImageFacts) *Finding {
		var ps []FieldProblem
		for _, p := range f.Header.Problems[name] {
			// One cause, one finding: corrupt_bit and dirty_bit say it
			// when qemu-img could read the header.
			if p.coveredBy == "" || f.OpenErr != nil || f.Info.Format != "qcow2" {
				ps = append(ps, p)
			}
		}
		if len(ps) == 0 {
			return &Finding{Severity: OK, Summary: fine}
		}
		sev := OK
		for _, p := range ps {
			sev = max(sev, p.Severity)
		}
		sum := fmt.Sprintf("%s = %s: %s", ps[0].Field, ps[0].Value, ps[0].Why)
		if len(ps) > 1 {
			sum += fmt.Sprintf(" (and %d more)", len(ps)-1)
		}
		return &Finding{Severity: sev, Summary: sum, Fields: ps,
			Evidence: map[string]string{"file_size": u(f.Header.FileSize)}}
	}
}

func salvageFinding(f ImageFacts) *Finding {
	d := f.Header
	h := d.Header
	ev := map[string]string{"file_size": u(d.FileSize)}
	if d.L1From == "" || d.Salvage == nil {
		why := "no L1 table could be read, and the search of the file's first 64 MiB found none"
		switch {
		case !h.clusterOK():
			why = "with no valid cluster size no table can be located"
		case len(d.L1Candidates) > 1:
			why = fmt.Sprintf("no L1 table could be read, and the search found %d that could be it, at %v", len(d.L1Candidates), d.L1Candidates)
		}
		fd := &Finding{Severity: Critical, Summary: why + ": the guest data cannot be located from this file", Evidence: ev,
			Fix: "Restore from a backup; the qcow2_* findings name what is broken, for a specialist to rebuild a copy."}
		if len(d.Patches) > 0 {
			fd.Salvage = salvageCommands(f)
		}
		return fd
	}
	s := d.Salvage
	ev["l1_table_offset"] = u(d.L1Offset)
	ev["l1_from"] = d.L1From
	ev["mapped_bytes"] = u(s.MappedBytes)
	ev["ranges"] = fmt.Sprint(len(s.Runs))
	ev["l2_tables_read"] = fmt.Sprint(s.L2Tables)
	ev["compressed_clusters"], ev["lost_clusters"], ev["zero_clusters"] = u(s.Compressed), u(s.Lost), u(s.Zero)
	sum := fmt.Sprintf("L2 tables still map %d bytes of guest data in %d range(s)", s.MappedBytes, len(s.Runs))
	if d.L1From == "scan" {
		sum += fmt.Sprintf(", through an L1 table found at %d", d.L1Offset)
	}
	if s.Lost > 0 || s.Compressed > 0 {
		sum += fmt.Sprintf("; %d cluster(s) past the end of the file or invalid, %d compressed (not copied)", s.Lost, s.Compressed)
	}
	if s.Stopped {
		sum += fmt.Sprintf("; walk stopped after %d L2 tables", s.L2Tables)
	}
	return &Finding{Severity: Info, Summary: sum, Evidence: ev, Salvage: salvageCommands(f)}
}

// salvageCommands are the shell commands that copy the mapped ranges
// into a new raw file. They read the image only (dd if=IMAGE).
func salvageCommands(f ImageFacts) []string {
	d := f.Header
	h, s := d.Header, d.Salvage
	img := shellQuote(f.Path)
	cs := h.clusterSize()
	var cmds []string
	if len(d.Patches) > 0 {
		cmds = append(cmds, "# a copy with these header bytes restored may open in qemu-img (then qemu-img convert it); the image stays as it is",
			fmt.Sprintf("cp --sparse=always %s COPY.qcow2", img))
		for _, p := range d.Patches {
			cmds = append(cmds, fmt.Sprintf("printf '%s' | dd of=COPY.qcow2 bs=1 seek=%d count=%d conv=notrunc status=none  # %s",
				octal(p.Bytes), p.Off, len(p.Bytes), p.What))
		}
		cmds = append(cmds, "qemu-img check COPY.qcow2")
	}
	if s == nil {
		return cmds
	}
	if len(s.Runs) == 0 {
		return append(cmds, "# no guest range maps to data inside the file: nothing to copy out")
	}
	if h.BackingOffset != 0 {
		cmds = append(cmds, "# unmapped ranges read from the backing file: start from a raw copy of it",
			"qemu-img convert -O raw BACKING RESCUE.raw")
	} else {
		cmds = append(cmds, "# a new sparse raw file of the virtual size; the image is only read",
			fmt.Sprintf("truncate -s %d RESCUE.raw", h.Size))
	}
	// Every range, however many: this is the list the data is saved by.
	for _, r := range s.Runs {
		cmds = append(cmds, fmt.Sprintf("dd if=%s of=RESCUE.raw bs=%d skip=%d seek=%d count=%d conv=notrunc,sparse status=none  # guest %d-%d <- file %d",
			img, cs, r.Host/cs, r.Guest/cs, (r.Len+cs-1)/cs, r.Guest, r.Guest+r.Len-1, r.Host))
	}
	return cmds
}

// octal writes bytes as printf(1) octal escapes (POSIX printf has no
// \x).
func octal(bs []byte) string {
	var b strings.Builder
	for _, c := range bs {
		fmt.Fprintf(&b, "\\%03o", c)
	}
	return b.String()
}

func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./+:") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// problemChecks are the header checks in table order, for tests.
func problemChecks(d *Qcow2Diag) []string {
	var out []string
	for name := range d.Problems {
		out = append(out, name)
	}
	sort.Strings(out)
	return out
}
