"""CASync Live: the avatar in a browser, in real time.

`engine` renders (one model, every session, one 40 ms clock); `session` holds a session's speech
and events; `avatar` the source and its idle loop; `tracks` and `server` carry it over WebRTC and
HTTP (`python -m casync.live`); `client` is the Python side of the same API.
"""
