"""The product's configuration schema: what keys a platform, a tenant, a user, an activity list
or a forwarding allow-list has, and the rules between them. Each function is a check in the sense
of `asterisk_conf/checks.py`; `asterisk_conf/validate.py` runs them over the files."""
