"""Several Asterisk nodes behind one SIP edge: where tenants go, and what each part is given."""
