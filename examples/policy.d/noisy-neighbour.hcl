# Calm a noisy writer: when a disk writes hard, hold its writes to a
# budget; let go once it has been quiet for a while.
#
# Throttling lowers the very rate the rule watches. qtune knows that: while
# the disk runs at 90% or more of the throttle this rule holds, its write
# rate shows the limit, not the demand, so the comparison is unknown (see
# docs/policy.md, "Censored metrics") and the throttle stays. It is lifted
# once the disk has run well below its budget for clear_after.
rule "calm-noisy-writers" {
  description = "hold a disk that writes hard to 300 IOPS until it calms down"

  when = avg_over(disk.write_iops, "10s") > 800

  for         = "15s"  # must hold this long before acting
  clear_after = "20s"  # must be calm this long before the throttle is lifted
  cooldown    = "30s"

  throttle {
    write_iops            = 300
    write_iops_max        = 450 # short bursts
    write_iops_max_length = 5
  }
}
