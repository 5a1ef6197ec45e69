rule "convert-bad-cluster" {
  when = disk.backing_depth > 100
  convert {
    cluster_size     = "3KiB"
    compression_type = "lz4"
  }
}

rule "convert-nothing" {
  when = disk.backing_depth > 100
  convert { speed = "1MiB" }
}

rule "convert-raw-l2" {
  when = disk.backing_depth > 100
  convert {
    format      = "raw"
    extended_l2 = true
  }
}

rule "mirror-small-l2" {
  when = disk.backing_depth > 100
  mirror {
    target_dir   = "/srv/fast"
    cluster_size = "4KiB"
    extended_l2  = true
  }
}
