# Size the qcow2 L2 cache of large disks so that it covers the whole disk:
# QEMU's default (32 MiB at most) covers 256 GiB at 64 KiB clusters, and a
# cache miss on a random read costs an extra metadata read.
rule "l2-cache-covers-disk" {
  match {
    format = "qcow2"
  }
  when = disk.l2_coverage < 1 && disk.read_iops > 50
  for  = "5m"

  l2_cache {
    size = "auto"
    max  = "64MiB"
  }
}
