rule "throttle-past-qemu" {
  when = disk.write_iops > 1000
  throttle {
    write_iops     = 18446744073709551616
    read_bps       = "2000TB"
    read_bps_max   = "2000TB"
    write_iops_max = 1000000000000001
  }
}

rule "burst-too-long" {
  when = disk.write_iops > 1000
  throttle {
    read_iops            = 1000
    read_iops_max        = 1000000
    read_iops_max_length = 1000000000000
    iops_size            = "4KiB"
  }
}

rule "l2-past-qemu" {
  match { format = "qcow2" }
  when = disk.read_iops > 50
  l2_cache {
    size           = "2TiB"
    max            = "2TiB"
    clean_interval = "50000d"
  }
}

rule "stream-past-qemu" {
  when = disk.backing_depth > 3
  stream { speed = 9223372036854775808 }
}

rule "mirror-past-qemu" {
  when = disk.backing_depth > 3
  mirror {
    target_dir = "/fast"
    speed      = "8589934592GiB"
  }
}

rule "convert-overflow" {
  when     = disk.backing_depth > 3
  priority = 99999999999999999999
  convert {
    cluster_size = "4KiB"
    speed        = "20000000TB"
  }
}

rule "size-without-iops" {
  when = disk.write_iops > 1000
  throttle {
    read_bps  = "10MiB"
    iops_size = "4KiB"
  }
}
