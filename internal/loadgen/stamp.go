package loadgen

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
)

// Stamped writes let a test prove that no write was lost or misplaced
// while a block job ran under the guest: every block written by the
// stampwrite pattern carries its own offset and a generation, the rest of
// it a fill derived from both. The verify pattern reads every block the
// guest wrote back and checks it holds the last generation written; the
// host checks any image the same way with CheckStamps.

var stampMagic = []byte("QTSTAMP1")

// Stamp fills buf (one block) for offset off, generation gen.
func Stamp(buf []byte, off int64, gen uint64) {
	copy(buf, stampMagic)
	binary.LittleEndian.PutUint64(buf[8:], uint64(off))
	binary.LittleEndian.PutUint64(buf[16:], gen)
	seed := byte(off>>9) ^ byte(gen*31)
	for i := 24; i < len(buf); i++ {
		buf[i] = seed + byte(i)
	}
}

// ReadStamp checks a block read at off: its generation, or 0 for a block
// never stamped (all zeros), or an error naming what is wrong.
func ReadStamp(buf []byte, off int64) (uint64, error) {
	if !bytes.HasPrefix(buf, stampMagic) {
		for _, b := range buf {
			if b != 0 {
				return 0, fmt.Errorf("block at %d holds neither a stamp nor zeros", off)
			}
		}
		return 0, nil
	}
	if got := int64(binary.LittleEndian.Uint64(buf[8:])); got != off {
		return 0, fmt.Errorf("block at %d holds the stamp of offset %d", off, got)
	}
	gen := binary.LittleEndian.Uint64(buf[16:])
	want := make([]byte, len(buf))
	Stamp(want, off, gen)
	if !bytes.Equal(buf, want) {
		return 0, fmt.Errorf("block at %d (generation %d) is torn", off, gen)
	}
	return gen, nil
}

// CheckStamps reads span bytes of r in blocks of bs and checks every
// block is zeros or a whole stamp of its own offset; it returns how many
// blocks were stamped.
func CheckStamps(r io.ReaderAt, span int64, bs int) (int, error) {
	buf := make([]byte, bs)
	n := 0
	for off := int64(0); off+int64(bs) <= span; off += int64(bs) {
		if _, err := r.ReadAt(buf, off); err != nil {
			return n, fmt.Errorf("read at %d: %w", off, err)
		}
		gen, err := ReadStamp(buf, off)
		if err != nil {
			return n, err
		}
		if gen > 0 {
			n++
		}
	}
	return n, nil
}

// VerifyResult is one worker's verify pass.
type VerifyResult struct {
	Worker  int
	Checked int // blocks this worker had written and read back
	Bad     int
	First   string // the first problem
}

func (v VerifyResult) String() string {
	if v.Bad == 0 {
		return fmt.Sprintf("qtune-verify ok worker=%d checked=%d", v.Worker, v.Checked)
	}
	return fmt.Sprintf("qtune-verify FAILED worker=%d checked=%d bad=%d first=%q", v.Worker, v.Checked, v.Bad, v.First)
}

// stamps is one worker's memory of what it wrote: generation per block
// of its share (blocks i with i%qd == worker).
type stamps struct {
	gen []uint64
}

// verify reads back every block this worker stamped.
func (r *Runner) verify(buf []byte, st *stamps, w int) VerifyResult {
	res := VerifyResult{Worker: w}
	qd := int64(r.P.QueueDepth)
	for i, want := range st.gen {
		if want == 0 {
			continue
		}
		off := (int64(i)*qd + int64(w)) * int64(r.P.BlockSize)
		res.Checked++
		_, err := r.Dev.ReadAt(buf, off)
		var got uint64
		if err == nil {
			got, err = ReadStamp(buf, off)
		}
		if err == nil && got != want {
			err = fmt.Errorf("block at %d holds generation %d, the guest last wrote %d", off, got, want)
		}
		if err != nil {
			res.Bad++
			if res.First == "" {
				res.First = err.Error()
			}
		}
	}
	return res
}
