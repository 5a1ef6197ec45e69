rule "broken" {
  when = disk.read_iops >
}
