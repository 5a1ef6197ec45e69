package doctor

import (
	"encoding/binary"
	"fmt"
	"io"
)

// Bounds of what the doctor reads of a damaged image: the salvage walk
// reads every L2 table, so a huge image stops at maxL2Read; the search
// for a lost L1 table looks at the first l1ScanBytes of the file, where
// qemu-img create puts it.
const (
	maxL2Read   = 256 << 20
	l1ScanBytes = 64 << 20
)

// Qcow2Diag is the doctor's own reading of a qcow2 image: every problem
// of its header and tables, and what its L2 tables still map.
type Qcow2Diag struct {
	FileSize uint64
	Header   qcow2Header
	Problems map[string][]FieldProblem
	// L1From says where the L1 table walked came from: "header", "scan"
	// (found by looking for it) or "" (none could be read).
	L1From   string
	L1Offset uint64
	// L1Candidates are the clusters the search took for an L1 table
	// when it found more than one.
	L1Candidates []uint64
	// Salvage is what the L2 tables map; nil when no L1 table could be
	// read.
	Salvage *Salvage
	// AssumedVersion is the version the header was read as when its own
	// is impossible (0 when it is 2 or 3).
	AssumedVersion uint32
	// Patches are the header bytes a copy of the image would need for
	// qemu-img to open it, where the doctor can tell what they were.
	Patches []Patch
}

// Patch is bytes to write at Off of a copy of the image (never the
// image itself).
type Patch struct {
	Off   uint64
	Bytes []byte
	What  string
}

// l2Ref is an L1 entry that points at a usable L2 table.
type l2Ref struct {
	index int
	off   uint64
}

// DiagnoseQcow2 reads a qcow2 image of size bytes (read-only), judges
// every header field and table, and walks the L2 tables to say which
// guest ranges can still be copied out; with scan it looks for the L1
// table when the header's offset is broken. Only a read error is an
// error: anything the bytes say is a problem in the result.
func DiagnoseQcow2(r io.ReaderAt, size uint64, scan bool) (*Qcow2Diag, error) {
	hb, err := readAtMost(r, 0, 1<<qcow2MaxClusterBits)
	if err != nil {
		return nil, fmt.Errorf("qcow2 header: %w", err)
	}
	h := parseQcow2Header(hb)
	d := diag{size: size}
	d.checkHeader(h, size)
	out := &Qcow2Diag{FileSize: size}
	if h.Magic != qcow2Magic {
		out.Patches = append(out.Patches, Patch{0, binary.BigEndian.AppendUint32(nil, qcow2Magic), "the qcow2 magic"})
	}
	if h.Version != 2 && h.Version != 3 {
		// One overwritten field should not hide the rest: read the header
		// as the version its length field suggests.
		v := uint32(2)
		if l := u32At(hb, 100); l >= qcow2V3HeaderLen && l%8 == 0 && l <= 4096 {
			v = 3
		}
		fixed := append(make([]byte, 0, max(len(hb), 8)), hb...)
		fixed = fixed[:max(len(hb), 8)]
		binary.BigEndian.PutUint32(fixed[4:], v)
		h = parseQcow2Header(fixed)
		out.AssumedVersion = v
		out.Patches = append(out.Patches, Patch{4, binary.BigEndian.AppendUint32(nil, v), fmt.Sprintf("version %d, which the header's length suggests", v)})
	}
	d.readExtensions(&h, hb)
	d.checkFeatures(h)
	out.Header = h
	l1OK, refOK := d.checkTables(h, size)
	if h.clusterOK() {
		if err := d.checkSnapshots(r, h, size); err != nil {
			return nil, err
		}
	}
	if refOK {
		if err := d.checkRefcountEntries(r, h, size); err != nil {
			return nil, err
		}
	}
	var refs []l2Ref
	switch {
	case l1OK:
		out.L1From, out.L1Offset = "header", h.L1Offset
		if refs, err = d.walkL1(r, h, size); err != nil {
			return nil, err
		}
	case h.clusterOK() && h.L1Size > 0 && uint64(h.L1Size)*8 <= qcow2MaxL1Bytes && scan:
		found, err := scanL1(r, h, size, d.snapL1)
		if err != nil {
			return nil, err
		}
		if len(found) != 1 {
			out.L1Candidates = found
		} else {
			off := found[0]
			if off != h.L1Offset {
				out.Patches = append(out.Patches, Patch{40, binary.BigEndian.AppendUint64(nil, off), "the offset of the L1 table found"})
			}
			out.L1From, out.L1Offset = "scan", off
			var scratch diag
			if refs, err = scratch.walkL1At(r, h, size, off); err != nil {
				return nil, err
			}
		}
	}
	if out.L1From != "" {
		if out.Salvage, err = walkL2(r, h, size, refs); err != nil {
			return nil, err
		}
		if s := out.Salvage; out.L1From == "header" && s.Lost > 0 {
			d.add("qcow2_l1_entries", "l2_table_entry", fmt.Sprintf("%d cluster(s), the first at guest offset %d", s.Lost, s.FirstLost),
				"L2 entries point at data past the end of the file (or are invalid): those guest clusters are lost and read as zeros or fail")
		}
	}
	out.Problems = d.probs
	return out, nil
}

func (d *diag) walkL1(r io.ReaderAt, h qcow2Header, size uint64) ([]l2Ref, error) {
	return d.walkL1At(r, h, size, h.L1Offset)
}

// walkL1At reads the L1 table at off and judges each entry; it returns
// the L2 tables that can be read.
func (d *diag) walkL1At(r io.ReaderAt, h qcow2Header, size, off uint64) ([]l2Ref, error) {
	b, err := readAtMost(r, off, uint64(h.L1Size)*8)
	if err != nil {
		return nil, fmt.Errorf("L1 table at %d: %w", off, err)
	}
	l1 := span{"L1 table", off, uint64(h.L1Size) * 8}
	avoid := []span{l1, h.refSpan()}
	bad := badEntries{check: "qcow2_l1_entries", field: "l1_table_entry", what: "L2 table"}
	seen := map[uint64]int{}
	var refs []l2Ref
	for i := 0; i+8 <= len(b); i += 8 {
		e := binary.BigEndian.Uint64(b[i:])
		l2 := e & tableOffsetMask
		if e == 0 || (l2 == 0 && e&l1Reserved == 0) {
			continue
		}
		if !bad.judge(i/8, e, l2, e&l1Reserved != 0, h, size, avoid) {
			continue
		}
		if j, dup := seen[l2]; dup {
			d.add("qcow2_l1_entries", "l1_table_entry", fmt.Sprintf("[%d] and [%d] = 0x%x", j, i/8, l2),
				"two L1 entries point at the same L2 table: writes through one change the other's guest range")
			continue
		}
		seen[l2] = i / 8
		refs = append(refs, l2Ref{index: i / 8, off: l2})
	}
	bad.report(d)
	return refs, nil
}

// Run is a guest range that sits contiguously in the image file.
type Run struct {
	Guest uint64 `json:"guest_offset"`
	Host  uint64 `json:"host_offset"`
	Len   uint64 `json:"length"`
}

// Salvage is what the L2 tables still map of the guest disk.
type Salvage struct {
	Runs        []Run  `json:"runs"`
	MappedBytes uint64 `json:"mapped_bytes"`
	// Clusters the walk could not copy with dd: compressed, or whose
	// data lies past the end of the file; zero clusters read as zeros.
	Compressed, Lost, Zero uint64
	FirstLost              uint64 // guest offset of the first lost cluster
	// L2Tables is how many L2 tables were read; Stopped when the walk
	// hit maxL2Read before the end.
	L2Tables int
	Stopped  bool
}

// walkL2 reads the L2 tables and merges what they map into runs.
func walkL2(r io.ReaderAt, h qcow2Header, size uint64, refs []l2Ref) (*Salvage, error) {
	cs, n := h.clusterSize(), h.l2Entries()
	step := cs / n // bytes per entry: 8, or 16 with extended L2
	s := &Salvage{}
	for _, ref := range refs {
		if uint64(s.L2Tables+1)*cs > maxL2Read {
			s.Stopped = true
			break
		}
		b, err := readAtMost(r, ref.off, cs)
		if err != nil {
			return nil, fmt.Errorf("L2 table at %d: %w", ref.off, err)
		}
		s.L2Tables++
		for j := uint64(0); j < n && (j+1)*step <= uint64(len(b)); j++ {
			guest := (uint64(ref.index)*n + j) * cs
			if guest >= h.Size {
				break
			}
			s.add(binary.BigEndian.Uint64(b[j*step:]), guest, h, size)
		}
	}
	return s, nil
}

func (s *Salvage) add(e, guest uint64, h qcow2Header, size uint64) {
	cs := h.clusterSize()
	if e&l2Compressed != 0 {
		s.Compressed++
		return
	}
	off := e & tableOffsetMask
	switch {
	case off == 0:
		if e&l2ZeroFlag != 0 {
			s.Zero++
		}
		return
	case e&l2Reserved != 0 || off%cs != 0 || off < cs || off+cs > size:
		if s.Lost == 0 {
			s.FirstLost = guest
		}
		s.Lost++
		return
	}
	length := min(cs, h.Size-guest)
	s.MappedBytes += length
	if k := len(s.Runs) - 1; k >= 0 && s.Runs[k].Guest+s.Runs[k].Len == guest && s.Runs[k].Host+s.Runs[k].Len == off {
		s.Runs[k].Len += length
		return
	}
	s.Runs = append(s.Runs, Run{Guest: guest, Host: off, Len: length})
}

// scanL1 looks for the active L1 table when the header no longer says
// where it is: a cluster whose L1Size entries are all empty or point at
// whole clusters of the file that look like L2 tables, and that no other
// such cluster points at (an L2 table mapping zeroed data looks like an
// L1 table too, but an L1 table points at it). More than one answer
// is no answer: the caller lists them.
func scanL1(r io.ReaderAt, h qcow2Header, size uint64, snapL1 []uint64) ([]uint64, error) {
	cs := h.clusterSize()
	var cands []uint64
	targets := map[uint64]bool{}
	skip := map[uint64]bool{h.RefTableOffset: true, h.SnapshotsOffset: true}
	for _, o := range snapL1 {
		skip[o] = true // a snapshot's L1 table maps the same L2 tables
	}
	for off := cs; off < min(size, l1ScanBytes); off += cs {
		if skip[off] {
			continue
		}
		tg, ok, err := l1Candidate(r, h, size, off, skip)
		if err != nil {
			return nil, err
		}
		if ok {
			cands = append(cands, off)
			for _, t := range tg {
				targets[t] = true
			}
		}
	}
	var found []uint64
	for _, c := range cands {
		if !targets[c] {
			found = append(found, c)
		}
	}
	return found, nil
}

func l1Candidate(r io.ReaderAt, h qcow2Header, size, off uint64, skip map[uint64]bool) ([]uint64, bool, error) {
	cs := h.clusterSize()
	b, err := readAtMost(r, off, uint64(h.L1Size)*8)
	if err != nil || uint64(len(b)) < uint64(h.L1Size)*8 {
		return nil, false, err
	}
	var tg []uint64
	for i := 0; i < len(b); i += 8 {
		e := binary.BigEndian.Uint64(b[i:])
		if e == 0 {
			continue
		}
		l2 := e & tableOffsetMask
		if e&l1Reserved != 0 || l2%cs != 0 || l2 < cs || l2+cs > size || l2 == off || skip[l2] {
			return nil, false, nil
		}
		if ok, err := looksLikeL2(r, h, size, l2); err != nil || !ok {
			return nil, false, err
		}
		tg = append(tg, l2)
	}
	return tg, len(tg) > 0, nil
}

func looksLikeL2(r io.ReaderAt, h qcow2Header, size, off uint64) (bool, error) {
	cs := h.clusterSize()
	b, err := readAtMost(r, off, cs)
	if err != nil {
		return false, err
	}
	step := cs / h.l2Entries()
	for i := uint64(0); i+8 <= uint64(len(b)); i += step {
		e := binary.BigEndian.Uint64(b[i:])
		if e&l2Compressed != 0 {
			continue
		}
		d := e & tableOffsetMask
		if e&l2Reserved != 0 || d%cs != 0 || (d != 0 && (d < cs || d >= size)) {
			return false, nil
		}
	}
	return true, nil
}

// u32At is the big-endian word at off, zero past the end of b.
func u32At(b []byte, off int) uint32 {
	if off+4 > len(b) {
		return 0
	}
	return binary.BigEndian.Uint32(b[off:])
}
