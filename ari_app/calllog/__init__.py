"""The call log's recorder: Asterisk's call records, read over AMI, into the call-state database."""
