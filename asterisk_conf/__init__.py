"""YAML tenant configuration → validated model → Asterisk files → atomic deploy; the vipbx CLI."""
