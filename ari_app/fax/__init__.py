"""Received faxes: converted to PDF and e-mailed to the user (docs/web.md, "Fax")."""
