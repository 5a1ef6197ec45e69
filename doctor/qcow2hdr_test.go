package doctor

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
)

// tinyQcow2 builds a valid qcow2 v3 image in memory, small enough to
// fuzz: 512-byte clusters, 1 MiB virtual, two data clusters at guest 0
// and 512. Clusters: 0 header, 1 refcount table, 2 refcount block,
// 3 L1 table (32 entries), 4 L2 table, 5-6 data.
func tinyQcow2() []byte {
	const cs = 512
	b := make([]byte, 7*cs)
	be := binary.BigEndian
	be.PutUint32(b[0:], qcow2Magic)
	be.PutUint32(b[4:], 3)
	be.PutUint32(b[20:], 9)
	be.PutUint64(b[24:], 1<<20)
	be.PutUint32(b[36:], 32)
	be.PutUint64(b[40:], 3*cs)
	be.PutUint64(b[48:], 1*cs)
	be.PutUint32(b[56:], 1)
	be.PutUint32(b[96:], 4)
	be.PutUint32(b[100:], 112)
	be.PutUint64(b[cs:], 2*cs) // refcount table -> block
	for i := 0; i < 7; i++ {
		be.PutUint16(b[2*cs+2*i:], 1)
	}
	be.PutUint64(b[3*cs:], 1<<63|4*cs)   // L1[0] -> L2
	be.PutUint64(b[4*cs:], 1<<63|5*cs)   // guest 0 -> cluster 5
	be.PutUint64(b[4*cs+8:], 1<<63|6*cs) // guest 512 -> cluster 6
	copy(b[5*cs:], bytes.Repeat([]byte{0x5a}, 2*cs))
	return b
}

func diagnose(t testing.TB, b []byte, scan bool) *Qcow2Diag {
	t.Helper()
	d, err := DiagnoseQcow2(bytes.NewReader(b), uint64(len(b)), scan)
	if err != nil {
		t.Fatalf("a reader that cannot fail failed: %v", err)
	}
	return d
}

func TestTinyQcow2IsClean(t *testing.T) {
	d := diagnose(t, tinyQcow2(), true)
	if len(d.Problems) != 0 {
		t.Fatalf("problems in a valid image: %+v", d.Problems)
	}
	s := d.Salvage
	if d.L1From != "header" || s == nil || len(s.Runs) != 1 || s.Runs[0] != (Run{Guest: 0, Host: 5 * 512, Len: 1024}) {
		t.Fatalf("walk: from %q salvage %+v", d.L1From, s)
	}
}

func put(b []byte, off int, v any) []byte {
	c := append([]byte(nil), b...)
	switch v := v.(type) {
	case uint32:
		binary.BigEndian.PutUint32(c[off:], v)
	case uint64:
		binary.BigEndian.PutUint64(c[off:], v)
	}
	return c
}

// Each field broken on its own lands in its own check, without QEMU.
func TestFieldsBrokenOneByOne(t *testing.T) {
	good := tinyQcow2()
	for _, c := range []struct {
		name, check, field string
		img                []byte
	}{
		{"magic", "qcow2_header", "magic", put(good, 0, uint32(0x58585858))},
		{"version", "qcow2_header", "version", put(good, 4, uint32(7))},
		{"cluster bits", "qcow2_cluster_bits", "cluster_bits", put(good, 20, uint32(22))},
		{"size", "qcow2_l1_table", "l1_size", put(good, 24, uint64(1<<40))},
		{"l1 unaligned", "qcow2_l1_table", "l1_table_offset", put(good, 40, uint64(3*512+8))},
		{"l1 past end", "qcow2_l1_table", "l1_table_offset", put(good, 40, uint64(64*512))},
		{"refcount into header", "qcow2_refcount_table", "refcount_table_offset", put(good, 48, uint64(0))},
		{"refcount over l1", "qcow2_refcount_table", "refcount_table_offset", put(good, 48, uint64(3*512))},
		{"snapshots past end", "qcow2_snapshot_table", "snapshots_offset", put(put(good, 60, uint32(1)), 64, uint64(100*512))},
		{"unknown feature", "qcow2_features", "incompatible_features", put(good, 72, uint64(1<<20))},
		{"extended L2, small clusters", "qcow2_features", "incompatible_features", put(good, 72, uint64(incompatExtL2))},
		{"header length", "qcow2_header", "header_length", put(good, 100, uint32(108))},
		{"extension too large", "qcow2_extensions", "extension", put(put(good, 112, uint32(extFeatureTable)), 116, uint32(4096))},
		{"L1 entry into header", "qcow2_l1_entries", "l1_table_entry", put(good, 3*512, uint64(1<<63|256))},
		{"two L1 entries, one L2", "qcow2_l1_entries", "l1_table_entry", put(good, 3*512+8, uint64(1<<63|4*512))},
		{"cut inside the L2 table", "qcow2_l1_entries", "l1_table_entry", good[:4*512+100]},
		{"data past the end", "qcow2_l1_entries", "l2_table_entry", good[:6*512]},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := diagnose(t, c.img, true)
			ps := d.Problems[c.check]
			if len(ps) == 0 || ps[0].Field != c.field || ps[0].Severity != Critical {
				t.Fatalf("want %s/%s critical, got %+v", c.check, c.field, d.Problems)
			}
		})
	}
}

// With its L1 offset overwritten, the table is found again and a copy
// with the found offset is what the salvage proposes.
func TestLostL1IsFound(t *testing.T) {
	d := diagnose(t, put(tinyQcow2(), 40, uint64(0x4141414141414141)), true)
	if d.L1From != "scan" || d.L1Offset != 3*512 || len(d.Patches) != 1 || d.Patches[0].Off != 40 {
		t.Fatalf("from %q at %d patches %+v", d.L1From, d.L1Offset, d.Patches)
	}
	f := ImageFacts{Path: "/img/it's.qcow2", Header: d, OpenErr: errors.New("qemu-img: Active L1 table offset invalid")}
	cmds := salvageCommands(f)
	want := `dd if='/img/it'\''s.qcow2' of=RESCUE.raw bs=512 skip=5 seek=0 count=2 conv=notrunc,sparse status=none  # guest 0-1023 <- file 2560`
	if cmds[len(cmds)-1] != want {
		t.Fatalf("last command\n%s\nwant\n%s", cmds[len(cmds)-1], want)
	}
	if octal([]byte{0, 0, 6, 0}) != `\000\000\006\000` {
		t.Fatal(octal([]byte{0, 0, 6, 0}))
	}
}

// obviouslyBroken is an oracle written apart from the diagnosis: the
// plainest rules a qcow2 breaks, checked the simplest way.
func obviouslyBroken(b []byte) bool {
	if len(b) < 104 {
		return true
	}
	be := binary.BigEndian
	v, bits := be.Uint32(b[4:]), be.Uint32(b[20:])
	if be.Uint32(b[0:]) != qcow2Magic || (v != 2 && v != 3) || bits < 9 || bits > 21 {
		return true
	}
	n := uint64(len(b))
	l1n, l1 := uint64(be.Uint32(b[36:])), be.Uint64(b[40:])
	rt, rtc := be.Uint64(b[48:]), uint64(be.Uint32(b[56:]))
	cs := uint64(1) << bits
	per := cs * cs / 8
	if v == 3 && be.Uint64(b[72:])&incompatExtL2 != 0 {
		per = cs * cs / 16
	}
	size := be.Uint64(b[24:])
	need := size / per
	if size%per != 0 {
		need++
	}
	return l1n < need || (l1n > 0 && (l1 >= n || n-l1 < l1n*8)) || rtc == 0 || rt >= n || rtc > (n-rt)/cs
}

// Random headers, and random bytes after a valid header: the diagnosis
// never panics, and an image the oracle calls broken is never reported
// better than critical, whether qemu-img opened it or not.
func FuzzDiagnoseQcow2(f *testing.F) {
	good := tinyQcow2()
	f.Add(false, good)
	f.Add(false, good[:100])
	f.Add(false, good[:8])
	f.Add(false, put(good, 40, uint64(0x4141414141414141)))
	f.Add(false, put(good, 20, uint32(30)))
	f.Add(false, put(good, 48, uint64(3*512)))
	f.Add(false, put(put(good, 60, uint32(3)), 64, uint64(6*512)))
	f.Add(false, put(good, 3*512, uint64(1<<63|256)))
	f.Add(true, good[112:])
	f.Add(true, bytes.Repeat([]byte{0xff}, 600))
	f.Add(true, []byte{0x68, 0x03, 0xf8, 0x57, 0, 0, 0, 48, 0, 5, 'x'})
	f.Fuzz(func(t *testing.T, afterHeader bool, data []byte) {
		img := data
		if afterHeader {
			img = append(append([]byte(nil), good[:112]...), data...)
		}
		d := diagnose(t, img, true)
		if !obviouslyBroken(img) {
			return
		}
		critical := false
		for _, ps := range d.Problems {
			for _, p := range ps {
				critical = critical || p.Severity == Critical
			}
		}
		if !critical {
			t.Fatalf("broken image without a critical problem: %+v", d.Problems)
		}
		for _, f := range []ImageFacts{
			{Path: "x.qcow2", Header: d, FileSize: uint64(len(img)), OpenErr: errors.New("qemu-img: cannot open")},
			{Path: "x.qcow2", Header: d, FileSize: uint64(len(img)), Info: ImageInfo{Format: "qcow2"}},
		} {
			if r := CheckImage(f); r.Worst() != Critical {
				t.Fatalf("broken image reported %s (open error %v): %+v", r.Worst(), f.OpenErr, r.Findings)
			}
		}
	})
}
