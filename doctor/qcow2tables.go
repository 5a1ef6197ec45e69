package doctor

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"
)

// Entry masks of the qcow2 L1, L2 and refcount tables.
const (
	tableOffsetMask  = 0x00fffffffffffe00
	l1Reserved       = 0x7f000000000001ff
	l2Compressed     = 1 << 62
	l2Reserved       = 0x3f000000000001fe // bits 1-8 and 56-61 of a standard entry
	l2ZeroFlag       = 1
	refEntryReserved = 0x1ff
	// maxExamples bounds the entries a finding lists one by one.
	maxExamples = 5
)

func (h qcow2Header) headerSpan() span { return span{"header cluster", 0, h.clusterSize()} }
func (h qcow2Header) l1Span() span     { return span{"L1 table", h.L1Offset, uint64(h.L1Size) * 8} }
func (h qcow2Header) refSpan() span {
	return span{"refcount table", h.RefTableOffset, uint64(h.RefTableClusters) << h.ClusterBits}
}

func (s span) String() string { return fmt.Sprintf("%s at %d-%d", s.Name, s.Off, s.end()-1) }

// l2Entries is how many entries one L2 table holds.
func (h qcow2Header) l2Entries() uint64 {
	if h.Version == 3 && h.Incompatible&incompatExtL2 != 0 {
		return h.clusterSize() / 16
	}
	return h.clusterSize() / 8
}

// checkTable judges where a table sits: cluster-aligned, after the
// header cluster, inside the file and no larger than QEMU reads.
func (d *diag) checkTable(check, field string, s span, h qcow2Header, size, maxLen uint64) bool {
	cs := h.clusterSize()
	why := ""
	switch {
	case s.Len > maxLen:
		why = fmt.Sprintf("the %s would be %d bytes; QEMU reads at most %d", s.Name, s.Len, maxLen)
	case s.Off < cs:
		why = fmt.Sprintf("points into the header cluster (bytes 0-%d)", cs-1)
	case s.Off%cs != 0:
		why = fmt.Sprintf("not a multiple of the cluster size (%d): tables start on a cluster", cs)
	case s.Off >= size:
		why = fmt.Sprintf("points past the end of the file (%d bytes)", size)
	case s.end() > size:
		why = fmt.Sprintf("the %s (%d bytes) runs past the end of the file at %d: the file was cut inside it", s.Name, s.Len, size)
	default:
		return true
	}
	d.add(check, field, hexv(s.Off), why)
	return false
}

// checkTables judges the L1, refcount and snapshot tables the header
// places, and the virtual size against the L1 table.
func (d *diag) checkTables(h qcow2Header, size uint64) (l1OK, refOK bool) {
	if !h.clusterOK() {
		d.add("qcow2_cluster_bits", "cluster_bits", fmt.Sprint(h.ClusterBits),
			fmt.Sprintf("clusters are 2^%d to 2^%d bytes; without a cluster size no table of the image can be located", qcow2MinClusterBits, qcow2MaxClusterBits))
		return false, false
	}
	cs := h.clusterSize()
	perL1 := cs * h.l2Entries() // guest bytes one L1 entry maps
	need := h.Size/perL1 + min(h.Size%perL1, 1)
	if need > math.MaxInt32 {
		d.add("qcow2_size", "size", fmt.Sprint(h.Size), fmt.Sprintf("with %d-byte clusters the L1 table would need %d entries; QEMU's limit is 2^31", cs, need))
	}
	l1 := h.l1Span()
	switch {
	case uint64(h.L1Size) < need:
		d.add("qcow2_l1_table", "l1_size", fmt.Sprint(h.L1Size), fmt.Sprintf("a virtual size of %d bytes needs %d L1 entries", h.Size, need))
	case l1.Len > 0:
		l1OK = d.checkTable("qcow2_l1_table", "l1_table_offset", l1, h, size, qcow2MaxL1Bytes)
	}
	ref := h.refSpan()
	if h.RefTableClusters == 0 {
		d.add("qcow2_refcount_table", "refcount_table_clusters", "0", "every qcow2 image has a refcount table")
	} else {
		refOK = d.checkTable("qcow2_refcount_table", "refcount_table_offset", ref, h, size, qcow2MaxRefTable)
	}
	if ref.overlaps(l1) {
		d.add("qcow2_refcount_table", "refcount_table_offset", hexv(ref.Off), fmt.Sprintf("the %s overlaps the %s", ref, l1))
		refOK = false // which of the two is right the bytes cannot say; the L1 entries are still judged
	}
	return l1OK, refOK
}

// checkSnapshots judges the snapshot table: its count, where it sits,
// that every entry ends inside the file and that each snapshot's L1
// table does too.
func (d *diag) checkSnapshots(r io.ReaderAt, h qcow2Header, size uint64) error {
	const c = "qcow2_snapshot_table"
	if h.NbSnapshots > qcow2MaxSnapshots {
		d.add(c, "nb_snapshots", fmt.Sprint(h.NbSnapshots), fmt.Sprintf("QEMU allows at most %d snapshots", qcow2MaxSnapshots))
		return nil
	}
	if h.NbSnapshots == 0 || !h.clusterOK() {
		return nil
	}
	first := span{"snapshot table", h.SnapshotsOffset, uint64(h.NbSnapshots) * qcow2SnapHeaderLen}
	if !d.checkTable(c, "snapshots_offset", first, h, size, qcow2MaxSnapshots*qcow2SnapHeaderLen) {
		return nil
	}
	off := h.SnapshotsOffset
	for i := uint32(0); i < h.NbSnapshots; i++ {
		off = (off + 7) &^ 7 // each entry starts 8-aligned; the last is not padded
		b, err := readAtMost(r, off, qcow2SnapHeaderLen)
		if err != nil {
			return fmt.Errorf("snapshot %d at %d: %w", i, off, err)
		}
		if len(b) < qcow2SnapHeaderLen {
			d.add(c, "snapshots_offset", hexv(h.SnapshotsOffset), fmt.Sprintf("snapshot %d of %d starts at %d and runs past the end of the file (%d bytes)", i+1, h.NbSnapshots, off, size))
			return nil
		}
		be := binary.BigEndian
		sl1, sl1n := be.Uint64(b[0:]), uint64(be.Uint32(b[8:]))
		n := qcow2SnapHeaderLen + uint64(be.Uint32(b[36:])) + uint64(be.Uint16(b[12:])) + uint64(be.Uint16(b[14:]))
		if sl1n > 0 && (sl1%h.clusterSize() != 0 || sl1 < h.clusterSize() || sl1+sl1n*8 > size) {
			d.add(c, "snapshots_offset", hexv(h.SnapshotsOffset), fmt.Sprintf("snapshot %d's L1 table (%d entries at %d) is not a table inside the file", i+1, sl1n, sl1))
		} else if sl1n > 0 {
			d.snapL1 = append(d.snapL1, sl1)
		}
		off += n
		if off > size {
			d.add(c, "snapshots_offset", hexv(h.SnapshotsOffset), fmt.Sprintf("snapshot %d of %d ends at %d, past the end of the file (%d bytes)", i+1, h.NbSnapshots, off, size))
			return nil
		}
	}
	t := span{"snapshot table", h.SnapshotsOffset, off - h.SnapshotsOffset}
	for _, o := range []span{h.l1Span(), h.refSpan()} {
		if t.overlaps(o) {
			d.add(c, "snapshots_offset", hexv(h.SnapshotsOffset), fmt.Sprintf("the %s overlaps the %s", t, o))
		}
	}
	return nil
}

// checkRefcountEntries reads the refcount table and judges where its
// refcount blocks are.
func (d *diag) checkRefcountEntries(r io.ReaderAt, h qcow2Header, size uint64) error {
	ref := h.refSpan()
	b, err := readAtMost(r, ref.Off, ref.Len)
	if err != nil {
		return fmt.Errorf("refcount table at %d: %w", ref.Off, err)
	}
	bad := badEntries{check: "qcow2_refcount_table", field: "refcount_table_entry", what: "refcount block"}
	for i := 0; i+8 <= len(b); i += 8 {
		e := binary.BigEndian.Uint64(b[i:])
		if e == 0 {
			continue
		}
		bad.judge(i/8, e, e&^refEntryReserved, e&refEntryReserved != 0, h, size, nil)
	}
	bad.report(d)
	return nil
}

// badEntries gathers the table entries that point where no metadata
// can be, and reports them as one problem per kind with a few examples.
type badEntries struct {
	check, field, what string
	kinds              []string
	count              map[string]int
	examples           map[string][]string
}

// judge returns whether the entry points at a whole cluster of the file
// that is free of the header and of the tables in avoid.
func (b *badEntries) judge(i int, e, off uint64, reserved bool, h qcow2Header, size uint64, avoid []span) bool {
	cs := h.clusterSize()
	why := ""
	switch {
	case reserved:
		why = "reserved bits set"
	case off < cs:
		why = fmt.Sprintf("points into the header cluster (bytes 0-%d)", cs-1)
	case off%cs != 0:
		why = fmt.Sprintf("not a multiple of the cluster size (%d)", cs)
	case off >= size:
		why = fmt.Sprintf("points past the end of the file (%d bytes)", size)
	case off+cs > size:
		why = fmt.Sprintf("the %s is cut short by the end of the file (%d bytes)", b.what, size)
	}
	for _, s := range avoid {
		if why == "" && s.overlaps(span{b.what, off, cs}) {
			why = "points into the " + s.Name
		}
	}
	if why == "" {
		return true
	}
	if b.count == nil {
		b.count, b.examples = map[string]int{}, map[string][]string{}
	}
	if b.count[why] == 0 {
		b.kinds = append(b.kinds, why)
	}
	b.count[why]++
	if len(b.examples[why]) < maxExamples {
		b.examples[why] = append(b.examples[why], fmt.Sprintf("[%d]=0x%x", i, e))
	}
	return false
}

func (b *badEntries) report(d *diag) {
	for _, why := range b.kinds {
		n := b.count[why]
		v := fmt.Sprint(b.examples[why])
		if n > maxExamples {
			v = fmt.Sprintf("%v and %d more", b.examples[why], n-maxExamples)
		}
		d.add(b.check, b.field, v, fmt.Sprintf("%d %s pointer(s): %s", n, b.what, why))
	}
}
