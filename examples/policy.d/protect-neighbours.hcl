# Protect the neighbours of a loud writer. Disks whose images share a host
# block device slow each other down; the victims see it first. When any
# other disk on the same device has read slowly for a while, throttle the
# disk that does more than half of the device's writing: the culprit, never
# the victims (their share is small).
rule "protect-neighbours" {
  description = "hold the disk writing most of a device to 10 MiB/s while its neighbours read slowly"
  priority    = 10 # wins over calm-noisy-writers on the same disk

  when = disk.neighbour_read_latency_ms > 20 && disk.device_write_share > 0.5
  for  = "20s"

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
