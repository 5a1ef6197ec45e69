# Calm a noisy writer: when a disk writes hard, hold its writes to a
# budget; let go once it has been quiet for a while.
#
# Throttling lowers the very rate the rule watches, so the condition also
# holds while the disk is throttled and still wants more than its budget:
# then requests wait in QEMU's throttle queue and the disk's queue depth
# stays near its guest's queue depth. Without that second half the rule
# would lift the throttle as soon as it worked, and flap.
rule "calm-noisy-writers" {
  description = "hold a disk that writes hard to 300 IOPS until it calms down"

  when = avg_over(disk.write_iops, "10s") > 800 || (disk.throttle_write_iops > 0 && disk.queue_depth > 0.5)

  for         = "15s"  # must hold this long before acting
  clear_after = "20s"  # must be calm this long before the throttle is lifted
  cooldown    = "30s"

  throttle {
    write_iops            = 300
    write_iops_max        = 450 # short bursts
    write_iops_max_length = 5
  }
}
