# Held by censoring: only a note.
rule "naive" {
  match { domain = "a-*" }
  priority = 1
  when     = disk.write_iops > 1000
  throttle { write_iops = 256 }
}

# The VM's total is not censored: the throttle makes it false.
rule "vm-total" {
  match { domain = "b-*" }
  priority = 2
  when     = vm.total_iops > 1000
  throttle { total_iops = 256 }
}

# Throttling raises latency: the rule never lets go.
rule "latency" {
  match { domain = "c-*" }
  priority = 3
  when     = disk.write_latency_ms > 20 && !(disk.queue_depth < 2)
  throttle { write_iops = 100 }
}

# The rule reads the limit it sets.
rule "reads-own-limit" {
  match { domain = "d-*" }
  priority = 4
  when     = disk.write_iops > 500 || disk.throttled
  throttle { write_iops = 1000 }
}

# A bigger cache covers the disk: the rule lets go, and flaps.
rule "l2" {
  match { domain = "e-*" }
  priority = 5
  when = disk.l2_coverage < 1 && disk.read_iops > 50
  l2_cache {
    size = "auto"
    max  = "64MiB"
  }
}

# The same with release_when: fine.
rule "l2-release" {
  match { domain = "f-*" }
  priority = 6
  when         = disk.l2_coverage < 1 && disk.read_iops > 50
  release_when = avg_over(disk.read_iops, "10m") < 1
  l2_cache {
    size = "auto"
    max  = "64MiB"
  }
}

# A release the action decides.
rule "release-on-coverage" {
  match { domain = "g-*" }
  priority = 7
  when         = disk.l2_coverage < 1 && disk.read_iops > 50
  release_when = disk.l2_coverage >= 1
  l2_cache {
    size = "auto"
    max  = "64MiB"
  }
}

# Recommend mode changes nothing: nothing to defeat.
rule "recommend" {
  match { domain = "h-*" }
  priority = 8
  mode     = "recommend"
  when     = vm.total_iops > 1000
  throttle { total_iops = 256 }
}

# A threshold below the limit is decided by the reading: nothing to say.
rule "below-limit" {
  match { domain = "i-*" }
  priority = 9
  when     = disk.write_iops > 100
  throttle { write_iops = 1000 }
}
