"""The ground every room stands on: the configuration model, number handling, the AMI client,
the paths under VIPBX_HOME and running blocking work off the event loop. Imports no other room."""
