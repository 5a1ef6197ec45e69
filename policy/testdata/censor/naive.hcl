# The first rule an SRE writes: its throttle caps the very rate it reads.
rule "calm-noisy-writers" {
  match { domain = "loud-*" }
  when        = disk.write_iops > 1000
  for         = "3s"
  clear_after = "5s"
  throttle { write_iops = 256 }
}

# Writes are held down, reads are not: the || stays known through reads.
rule "either" {
  match { domain = "either" }
  when        = disk.write_iops > 1000 || disk.read_iops > 500
  for         = "2s"
  clear_after = "3s"
  throttle { write_iops = 256 }
}

# A calm host is known even while writes are held: && is false.
rule "both" {
  match { domain = "both" }
  when        = avg_over(disk.write_iops, "3s") > 1000 && host.io_pressure_some_avg10 > 20
  for         = "2s"
  clear_after = "3s"
  throttle { write_iops = 256 }
}

# Hysteresis: in above 1000, out below 100.
rule "hysteresis" {
  match { domain = "hyst" }
  when         = disk.write_iops > 1000
  release_when = disk.write_iops < 100
  for          = "2s"
  clear_after  = "3s"
  throttle { write_iops = 500 }
}

# A window over a neighbour metric.
rule "neighbour-window" {
  match { domain = "nw-*" }
  priority = 5
  when     = avg_over(disk.neighbour_read_latency_ms, "3s") > 20 && disk.device_write_share > 0.5
  for      = "1s"
  throttle { write_bps = 1048576 }
}
