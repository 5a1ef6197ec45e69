# Calm a noisy writer: when one disk writes hard for a while and the host
# feels it, hold its writes to a budget; let go once it has been quiet.
rule "calm-noisy-writers" {
  description = "hold a disk that writes hard to 300 IOPS while the host is under I/O pressure"

  match {
    disk = "*"
  }

  when        = avg_over(disk.write_iops, "20s") > 800 && host.io_pressure_some_avg10 >= 0
  for         = "15s"   # must hold this long before acting
  clear_after = "20s"   # must be calm this long before the throttle is lifted
  cooldown    = "30s"

  throttle {
    write_iops     = 300
    write_iops_max = 450 # short bursts
    write_iops_max_length = 5
  }
}
