package hoststat

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// FSInfo is what qtune reads of a filesystem: its size and the bytes an
// unprivileged writer may still use (qtune never counts on the root
// reserve), and whether it is mounted read-only.
type FSInfo struct {
	Free, Size uint64
	ReadOnly   bool
}

// StatFS reads the filesystem under path.
func StatFS(path string) (FSInfo, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return FSInfo{}, fmt.Errorf("statfs %s: %w", path, err)
	}
	return FSInfo{Free: st.Bavail * uint64(st.Bsize), Size: st.Blocks * uint64(st.Bsize), ReadOnly: st.Flags&unix.ST_RDONLY != 0}, nil
}
