# Size the qcow2 L2 cache of large disks so that it covers the whole disk:
# QEMU's default (32 MiB at most) covers 256 GiB at 64 KiB clusters, and a
# cache miss on a random read costs an extra metadata read.
rule "l2-cache-covers-disk" {
  match {
    format = "qcow2"
  }
  when = disk.l2_coverage < 1 && disk.read_iops > 50
  for  = "5m"
  # The bigger cache raises the coverage the condition reads, so "when"
  # would turn false as soon as the cache works, and the rule would flap.
  # Let go only once the disk has been idle for a while instead.
  release_when = avg_over(disk.read_iops, "10m") < 1
  clear_after  = "30m"

  l2_cache {
    size = "auto"
    max  = "64MiB"
  }
}
