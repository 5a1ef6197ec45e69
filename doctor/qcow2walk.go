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
	// Salvage is what the L2 tables map; nil when not asked for or no L1
	// table could be read.
	Salvage *Salvage
}

// l2Ref is an L1 entry that points at a usable L2 table.
type l2Ref struct {
	index int
	off   uint64
}

// DiagnoseQcow2 reads a qcow2 image of size bytes (read-only) and judges
// every header field and table; with salvage it also walks the L2
// tables to say which guest ranges can still be copied out. Only a read
// error is an error: anything the bytes say is a problem in the result.
func DiagnoseQcow2(r io.ReaderAt, size uint64, salvage bool) (*Qcow2Diag, error) {
	hb, err := readAtMost(r, 0, 1<<qcow2MaxClusterBits)
	if err != nil {
		return nil, fmt.Errorf("qcow2 header: %w", err)
	}
	h := parseQcow2Header(hb)
	d := diag{size: size}
	d.readExtensions(&h, hb)
	d.checkHeader(h, size)
	d.checkFeatures(h)
	out := &Qcow2Diag{FileSize: size, Header: h}
	if h.Magic != qcow2Magic {
		out.Problems = d.probs
		return out, nil
	}
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
	case h.clusterOK() && h.L1Size > 0 && uint64(h.L1Size)*8 <= qcow2MaxL1Bytes && salvage:
		found, err := scanL1(r, h, size, d.snapL1)
		if err != nil {
			return nil, err
		}
		if len(found) != 1 {
			out.L1Candidates = found
		} else {
			off := found[0]
			out.L1From, out.L1Offset = "scan", off
			var scratch diag
			if refs, err = scratch.walkL1At(r, h, size, off); err != nil {
				return nil, err
			}
		}
	}
	if salvage && out.L1From != "" {
		if out.Salvage, err = walkL2(r, h, size, refs); err != nil {
			return nil, err
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
