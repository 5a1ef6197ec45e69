# Protect the neighbours of a loud writer. Disks whose images share a host
# block device slow each other down; the victims see it first. When another
# disk on the same device has read much slower than usual for a while,
# throttle the disk that does more than half of the device's writing: the
# culprit, never the victims (their share is small).
#
# "Slower than usual" is relative to each victim's own normal, which qtune
# learns from its samples (docs/policy.md, "Latency relative to normal"),
# so the rule needs no threshold in milliseconds and means the same on an
# NVMe drive where 2 ms is slow as on spinning disks where 20 ms is usual.
# It reads a p99 metric, so the agent turns QEMU's latency histograms on
# for it (unless its config says histograms { enabled = false }) and it
# watches the victims' p99; without them (or under libvirt) the p99 is
# unknown and their average read latency decides alone. The median over
# 10 s keeps one odd sample from starting or breaking the `for`.
rule "protect-neighbours" {
  description = "hold the disk writing most of a device to 10 MiB/s while its neighbours read much slower than usual"
  priority    = 10 # wins over calm-noisy-writers on the same disk

  when = ((p50_over(disk.neighbour_read_latency_p99_ratio, "10s") > 3 ||
           p50_over(disk.neighbour_read_latency_ratio, "10s") > 2.5) &&
          disk.device_write_share > 0.5)
  for  = "10s"

  # Throttling the culprit lowers both its share and its neighbours'
  # latency, so "when" would turn false as soon as the throttle works and
  # the rule would flap. Let go once the culprit itself has calmed down
  # (while it runs at its limit, its write rate is censored and the
  # throttle stays).
  release_when = disk.write_bps < 2097152
  clear_after  = "1m"
  cooldown     = "30s"

  throttle {
    write_bps = "10MiB"
  }
}
