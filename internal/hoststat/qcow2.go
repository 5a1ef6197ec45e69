package hoststat

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
)

// Qcow2Header is what the L2 arithmetic needs from a qcow2 image.
type Qcow2Header struct {
	ClusterSize uint64
	VirtualSize uint64
	ExtendedL2  bool
}

// ErrNotQcow2 means the file does not start with the qcow2 magic.
var ErrNotQcow2 = errors.New("hoststat: not a qcow2 image")

// ReadQcow2Header reads the fixed part of a qcow2 header (read-only; safe
// on an image a VM has open). Under libvirt the bulk stats carry no
// cluster size, and running qemu-img for every disk every few minutes
// would be heavier than reading 104 bytes.
func ReadQcow2Header(path string) (Qcow2Header, error) {
	f, err := os.Open(path)
	if err != nil {
		return Qcow2Header{}, err
	}
	defer f.Close()
	var b [104]byte
	if _, err := io.ReadFull(f, b[:]); err != nil {
		return Qcow2Header{}, fmt.Errorf("qcow2 header of %s: %w", path, err)
	}
	return parseQcow2Header(b[:])
}

func parseQcow2Header(b []byte) (Qcow2Header, error) {
	be := binary.BigEndian
	if be.Uint32(b[0:4]) != 0x514649fb {
		return Qcow2Header{}, ErrNotQcow2
	}
	bits := be.Uint32(b[20:24])
	if bits < 9 || bits > 21 {
		return Qcow2Header{}, fmt.Errorf("qcow2 cluster_bits %d out of range", bits)
	}
	h := Qcow2Header{ClusterSize: 1 << bits, VirtualSize: be.Uint64(b[24:32])}
	if be.Uint32(b[4:8]) >= 3 {
		h.ExtendedL2 = be.Uint64(b[72:80])&(1<<4) != 0
	}
	return h, nil
}
