rule "no-action" {
  when = disk.read_iops > 1
}
rule "l2" {
  when = disk.read_iops > 1
  window = "25:00-26:00"
  l2_cache {
    size = "64MiB"
    max  = "8MiB"
  }
}
rule "empty-throttle" {
  when = disk.read_iops > 1
  cooldown = ""
  throttle {
    write_iops = 0
  }
}
unknown_top = 1
rule "bad-release" {
  when         = disk.write_iops > 10
  release_when = disk.write_iopz < 5
  throttle { write_iops = 100 }
}
rule "release-number" {
  when         = disk.write_iops > 10
  release_when = disk.write_iops + 1
  throttle { write_iops = 100 }
}
