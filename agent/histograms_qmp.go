package agent

// ReadsHistograms says that a plain QEMU VM's samples carry its disks'
// latency histograms (query-blockstats does): turning them on is worth
// it. libvirt's bulk stats have none.
func (s *qmpSource) ReadsHistograms() bool { return true }
