package doctor

import (
	"encoding/binary"
	"fmt"
	"io"
	"strings"
)

// The qcow2 format's rules as QEMU 7.2 applies them when it opens an
// image (docs/interop/qcow2.txt, block/qcow2.c). qemu-img stops at the
// first rule an image breaks and names only that one; the doctor reads
// the header itself, read-only, and names every field that breaks one,
// because by then qemu-img has nothing more to say. No library parses a
// qcow2 header that is allowed to be wrong, so this is written here.
const (
	qcow2Magic          = 0x514649fb
	qcow2MinClusterBits = 9
	qcow2MaxClusterBits = 21
	qcow2MaxL1Bytes     = 32 << 20
	qcow2MaxRefTable    = 8 << 20
	qcow2MaxSnapshots   = 65536
	qcow2SnapHeaderLen  = 40
	qcow2V2HeaderLen    = 72
	qcow2V3HeaderLen    = 104
	qcow2MaxBackingName = 1023

	incompatDirty       = 1 << 0
	incompatCorrupt     = 1 << 1
	incompatDataFile    = 1 << 2
	incompatCompression = 1 << 3
	incompatExtL2       = 1 << 4
	incompatKnown       = 0x1f

	extEnd           = 0
	extBackingFormat = 0xe2792aca
	extFeatureTable  = 0x6803f857
	extBitmaps       = 0x23852875
	extCrypto        = 0x0537be77
	extDataFile      = 0x44415441
)

// qcow2Header is the header as the file has it, every field raw.
type qcow2Header struct {
	Magic, Version        uint32
	BackingOffset         uint64
	BackingSize           uint32
	ClusterBits           uint32
	Size                  uint64
	CryptMethod           uint32
	L1Size                uint32
	L1Offset              uint64
	RefTableOffset        uint64
	RefTableClusters      uint32
	NbSnapshots           uint32
	SnapshotsOffset       uint64
	Incompatible          uint64
	Compatible, Autoclear uint64
	RefcountOrder         uint32
	HeaderLength          uint32
	CompressionType       uint8
	// Extensions are the header extensions in file order; DataFile and
	// BackingFormat their contents when present.
	Extensions    []qcow2Ext
	FeatureNames  map[[2]uint8]string // (type, bit) -> name
	DataFile      string
	BackingFormat string
}

type qcow2Ext struct {
	Type   uint32
	Offset uint64 // of its data
	Len    uint32
}

// clusterOK says whether cluster_bits is usable for the arithmetic that
// follows; without it no offset can be judged.
func (h qcow2Header) clusterOK() bool {
	return h.ClusterBits >= qcow2MinClusterBits && h.ClusterBits <= qcow2MaxClusterBits
}

func (h qcow2Header) clusterSize() uint64 { return 1 << h.ClusterBits }

// headerLen is the length of the fixed header the version implies.
func (h qcow2Header) headerLen() uint64 {
	if h.Version == 2 {
		return qcow2V2HeaderLen
	}
	return uint64(h.HeaderLength)
}

// parseQcow2Header decodes b, zero-padded to the v3 length as QEMU does
// when the file is shorter (then the diagnosis says so).
func parseQcow2Header(b []byte) qcow2Header {
	var p [qcow2V3HeaderLen + 8]byte
	copy(p[:], b)
	be := binary.BigEndian
	h := qcow2Header{
		Magic: be.Uint32(p[0:]), Version: be.Uint32(p[4:]),
		BackingOffset: be.Uint64(p[8:]), BackingSize: be.Uint32(p[16:]),
		ClusterBits: be.Uint32(p[20:]), Size: be.Uint64(p[24:]),
		CryptMethod: be.Uint32(p[32:]), L1Size: be.Uint32(p[36:]),
		L1Offset: be.Uint64(p[40:]), RefTableOffset: be.Uint64(p[48:]),
		RefTableClusters: be.Uint32(p[56:]), NbSnapshots: be.Uint32(p[60:]),
		SnapshotsOffset: be.Uint64(p[64:]),
	}
	if h.Version == 2 {
		h.RefcountOrder, h.HeaderLength = 4, qcow2V2HeaderLen
		return h
	}
	h.Incompatible, h.Compatible, h.Autoclear = be.Uint64(p[72:]), be.Uint64(p[80:]), be.Uint64(p[88:])
	h.RefcountOrder, h.HeaderLength = be.Uint32(p[96:]), be.Uint32(p[100:])
	if h.HeaderLength > qcow2V3HeaderLen {
		h.CompressionType = p[104]
	}
	return h
}

// FieldProblem is one value of a qcow2 header field or table that no
// valid image can have.
type FieldProblem struct {
	Field    string   `json:"field"`
	Bytes    string   `json:"bytes,omitempty"` // where it sits in the file
	Value    string   `json:"value"`
	Why      string   `json:"why"`
	Severity Severity `json:"severity"`
	// coveredBy names the check that reports the same thing from
	// qemu-img info when qemu-img opens the image.
	coveredBy string
}

// Byte ranges of the header fields, for the report.
var fieldBytes = map[string]string{
	"magic": "0-3", "version": "4-7", "backing_file_offset": "8-15", "backing_file_size": "16-19",
	"cluster_bits": "20-23", "size": "24-31", "crypt_method": "32-35", "l1_size": "36-39",
	"l1_table_offset": "40-47", "refcount_table_offset": "48-55", "refcount_table_clusters": "56-59",
	"nb_snapshots": "60-63", "snapshots_offset": "64-71", "incompatible_features": "72-79",
	"compatible_features": "80-87", "autoclear_features": "88-95", "refcount_order": "96-99",
	"header_length": "100-103", "compression_type": "104",
}

// diag collects problems by the check that reports them.
type diag struct {
	probs  map[string][]FieldProblem
	size   uint64   // of the file
	snapL1 []uint64 // L1 tables of the internal snapshots
}

func (d *diag) add(check, field, value, why string) {
	d.addSev(check, field, value, why, Critical)
}

func (d *diag) addSev(check, field, value, why string, sev Severity) {
	if d.probs == nil {
		d.probs = map[string][]FieldProblem{}
	}
	var start uint64
	if _, err := fmt.Sscanf(fieldBytes[field], "%d", &start); err == nil && start >= d.size && field != "magic" {
		why += fmt.Sprintf(" (the field lies past the end of the file, %d bytes, and reads as zero)", d.size)
	}
	d.probs[check] = append(d.probs[check], FieldProblem{Field: field, Bytes: fieldBytes[field], Value: value, Why: why, Severity: sev})
}

// cover marks the last problem of check as one another check reports
// when qemu-img opens the image.
func (d *diag) cover(check, by string) {
	ps := d.probs[check]
	ps[len(ps)-1].coveredBy = by
}

func hexv(v uint64) string { return fmt.Sprintf("%d (0x%x)", v, v) }

// span is a byte range [Off, Off+Len) of the file.
type span struct {
	Name     string
	Off, Len uint64
}

func (s span) end() uint64 {
	if s.Off+s.Len < s.Off {
		return ^uint64(0)
	}
	return s.Off + s.Len
}

func (s span) overlaps(o span) bool {
	return s.Len > 0 && o.Len > 0 && s.Off < o.end() && o.Off < s.end()
}

// checkHeader judges the fixed header: magic, version, lengths, the
// backing file name, encryption and the refcount width.
func (d *diag) checkHeader(h qcow2Header, size uint64) {
	const c = "qcow2_header"
	if h.Magic != qcow2Magic {
		d.add(c, "magic", fmt.Sprintf("0x%08x", h.Magic), "not the qcow2 magic QFI\\xfb (0x514649fb)")
	}
	if h.Version != 2 && h.Version != 3 {
		why := "qcow2 versions are 2 and 3"
		if h.Version == 1 {
			why += "; version 1 is the old qcow format, whose header has another layout (qemu-img tried it and failed)"
		}
		d.add(c, "version", fmt.Sprint(h.Version), why)
	}
	need := uint64(qcow2V3HeaderLen)
	if h.Version == 2 {
		need = qcow2V2HeaderLen
	}
	if size < need {
		d.add(c, "file_size", fmt.Sprint(size), fmt.Sprintf("the file ends inside the header: a version %d header alone is %d bytes (fields past the end read as zero)", h.Version, need))
	}
	if h.Version == 3 {
		switch {
		case h.HeaderLength < qcow2V3HeaderLen:
			d.add(c, "header_length", fmt.Sprint(h.HeaderLength), "a version 3 header is at least 104 bytes")
		case h.HeaderLength%8 != 0:
			d.add(c, "header_length", fmt.Sprint(h.HeaderLength), "a version 3 header length is a multiple of 8")
		case h.clusterOK() && uint64(h.HeaderLength) > h.clusterSize():
			d.add(c, "header_length", fmt.Sprint(h.HeaderLength), fmt.Sprintf("the header must fit in the first cluster (%d bytes)", h.clusterSize()))
		}
		if h.RefcountOrder > 6 {
			d.add(c, "refcount_order", fmt.Sprint(h.RefcountOrder), "refcounts are at most 64 bits wide (order 0 to 6)")
		}
	}
	if h.CryptMethod > 2 {
		d.add(c, "crypt_method", fmt.Sprint(h.CryptMethod), "encryption methods are 0 (none), 1 (AES, legacy) and 2 (LUKS)")
	}
	if h.BackingOffset != 0 && h.clusterOK() {
		cs := h.clusterSize()
		switch {
		case h.BackingOffset > cs:
			d.add(c, "backing_file_offset", hexv(h.BackingOffset), fmt.Sprintf("the backing file name lies in the first cluster (%d bytes)", cs))
		case h.BackingOffset < h.headerLen():
			d.add(c, "backing_file_offset", hexv(h.BackingOffset), fmt.Sprintf("points inside the header (its first %d bytes)", h.headerLen()))
		case uint64(h.BackingSize) > min(qcow2MaxBackingName, cs-h.BackingOffset):
			d.add(c, "backing_file_size", fmt.Sprint(h.BackingSize), fmt.Sprintf("a backing file name is at most %d bytes and ends in the first cluster", qcow2MaxBackingName))
		case h.BackingOffset+uint64(h.BackingSize) > size:
			d.add(c, "backing_file_offset", hexv(h.BackingOffset), fmt.Sprintf("the backing file name runs past the end of the file (%d bytes)", size))
		}
	}
}

// checkFeatures judges the feature bits and what they imply.
func (d *diag) checkFeatures(h qcow2Header) {
	const c = "qcow2_features"
	if h.Version != 3 {
		return
	}
	v := fmt.Sprintf("0x%x", h.Incompatible)
	if unk := h.Incompatible &^ incompatKnown; unk != 0 {
		d.add(c, "incompatible_features", v, "unknown incompatible feature bit(s) "+h.bitNames(0, unk)+": no QEMU can read the image safely")
	}
	if h.Incompatible&incompatCorrupt != 0 {
		d.add(c, "incompatible_features", v, "bit 1 (corrupt) is set: QEMU found inconsistent metadata while writing")
		d.cover(c, "corrupt_bit")
	}
	if h.Incompatible&incompatDirty != 0 {
		why := "bit 0 (dirty) is set: refcounts are stale until rebuilt"
		if h.Compatible&1 == 0 {
			d.add(c, "incompatible_features", v, why+", and lazy refcounts (compatible bit 0) are off, so nothing should have set it")
		} else {
			d.addSev(c, "incompatible_features", v, why, Warn)
		}
		d.cover(c, "dirty_bit")
	}
	comp := h.Incompatible&incompatCompression != 0
	switch {
	case h.CompressionType > 1:
		d.add(c, "compression_type", fmt.Sprint(h.CompressionType), "compression types are 0 (zlib) and 1 (zstd)")
	case comp && h.HeaderLength <= qcow2V3HeaderLen:
		d.add(c, "incompatible_features", v, "bit 3 (compression type) is set but the header is too short to hold a compression type")
	case comp && h.CompressionType == 0:
		d.add(c, "incompatible_features", v, "bit 3 (compression type) is set with compression type 0 (zlib), which must leave it clear")
	case !comp && h.CompressionType != 0:
		d.add(c, "compression_type", fmt.Sprint(h.CompressionType), "a compression type other than zlib needs incompatible feature bit 3")
	}
	if h.Incompatible&incompatExtL2 != 0 && h.clusterOK() && h.ClusterBits < 14 {
		d.add(c, "incompatible_features", v, fmt.Sprintf("bit 4 (extended L2) needs clusters of at least 16384 bytes; these are %d", h.clusterSize()))
	}
	if h.Incompatible&incompatDataFile != 0 && h.DataFile == "" {
		d.add(c, "incompatible_features", v, "bit 2 (external data file) is set but no header extension names the data file")
	}
}

// bitNames names the set bits of mask, from the image's feature name
// table where it has them.
func (h qcow2Header) bitNames(typ uint8, mask uint64) string {
	var parts []string
	for b := 0; b < 64; b++ {
		if mask&(1<<b) == 0 {
			continue
		}
		if n, ok := h.FeatureNames[[2]uint8{typ, uint8(b)}]; ok {
			parts = append(parts, fmt.Sprintf("%d (%s)", b, n))
		} else {
			parts = append(parts, fmt.Sprint(b))
		}
	}
	return strings.Join(parts, ", ")
}

// readExtensions walks the header extensions from the end of the header
// to the backing file name (or the end of the first cluster), as QEMU
// does, and records what is malformed.
func (d *diag) readExtensions(h *qcow2Header, hb []byte) {
	const c = "qcow2_extensions"
	if !h.clusterOK() || h.headerLen() < qcow2V2HeaderLen {
		return
	}
	end := h.clusterSize()
	if h.BackingOffset != 0 && h.BackingOffset < end {
		end = h.BackingOffset
	}
	end = min(end, uint64(len(hb)))
	be := binary.BigEndian
	for off := h.headerLen(); off < end; {
		if off+8 > end {
			d.add(c, "extension", fmt.Sprintf("at byte %d", off), "the header extensions run into the backing file name or the end of the file without an end marker")
			return
		}
		e := qcow2Ext{Type: be.Uint32(hb[off:]), Len: be.Uint32(hb[off+4:]), Offset: off + 8}
		if e.Type == extEnd {
			return
		}
		if uint64(e.Len) > end-e.Offset {
			d.add(c, "extension", fmt.Sprintf("0x%08x at byte %d, length %d", e.Type, off, e.Len), fmt.Sprintf("extends past byte %d, where the extensions must end", end))
			return
		}
		h.Extensions = append(h.Extensions, e)
		data := hb[e.Offset : e.Offset+uint64(e.Len)]
		d.extension(h, e, data, off)
		off = e.Offset + (uint64(e.Len)+7)&^7
	}
}

func (d *diag) extension(h *qcow2Header, e qcow2Ext, data []byte, at uint64) {
	const c = "qcow2_extensions"
	where := fmt.Sprintf("at byte %d, length %d", at, e.Len)
	switch e.Type {
	case extFeatureTable:
		if len(data)%48 != 0 {
			d.add(c, "feature_name_table", where, "entries are 48 bytes each")
		}
		h.FeatureNames = map[[2]uint8]string{}
		for i := 0; i+48 <= len(data); i += 48 {
			name := strings.TrimRight(string(data[i+2:i+48]), "\x00")
			h.FeatureNames[[2]uint8{data[i], data[i+1]}] = name
		}
	case extBitmaps:
		if e.Len != 24 {
			d.add(c, "bitmaps_extension", where, "the bitmaps extension is 24 bytes")
		}
	case extCrypto:
		if h.CryptMethod != 2 {
			d.add(c, "crypto_extension", where, "a LUKS header extension in an image whose crypt_method is not 2 (LUKS)")
		} else if e.Len != 16 {
			d.add(c, "crypto_extension", where, "the LUKS header extension is 16 bytes")
		}
	case extDataFile:
		h.DataFile = string(data)
	case extBackingFormat:
		if e.Len >= 16 {
			d.add(c, "backing_format", where, "a backing format name is under 16 bytes")
		}
		h.BackingFormat = string(data)
	}
}

// readAtMost reads up to n bytes from the start of r; a short file is
// no error (the diagnosis judges its length).
func readAtMost(r io.ReaderAt, off, n uint64) ([]byte, error) {
	if s, ok := r.(interface{ Size() int64 }); ok {
		// Allocate what the file has, not what a broken field claims.
		if size := uint64(s.Size()); off >= size {
			return nil, nil
		} else if n > size-off {
			n = size - off
		}
	}
	b := make([]byte, n)
	got, err := r.ReadAt(b, int64(off))
	if err == io.EOF {
		err = nil
	}
	return b[:got], err
}
