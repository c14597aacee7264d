"""Conference rooms: the conference number's IVR (room number, PIN) in front of ConfBridge."""
