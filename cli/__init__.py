"""`vipbx`: every command group of the operators' command line. The top room: it may import any
other, and none imports it."""
