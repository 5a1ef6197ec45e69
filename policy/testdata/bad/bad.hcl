rule "a" {
  when = disk.write_iopz > 10 && frob(1)
  for = "-5s"
  throttle {
    total_iops = 100
    write_iops = 50
    read_bps_max = "10MiB"
    write_iops_max_length = 3
  }
}
rule "a" {
  when = disk.format + 1
  cache { no_flush = true }
}
rule "b" {
  when = avg_over(disk.format, "1m") > 3 && max_over(disk.read_iops, x) > 1
  mode = "yolo"
  stream {}
  mirror { target_dir = "rel" }
}
rule "c" {
  when = disk.read_iops > 1
  throttle { write_iops = 10 }
}
rule "d" {
  when = disk.read_iops > "x"
  throttle { write_iops = 10 }
}
rule "e" {
  when = disk.read_iops
  l2_cache {
    size = "auto"
    max = "1XB"
  }
}
