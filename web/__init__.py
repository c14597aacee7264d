"""The users' home page and its JSON API (docs/web.md): server-rendered pages over the same
services the phone uses (call state, voicemail spool, presence, notifier), served by
`vipbx serve` on `platform.web`."""
