"""RFC 6455 server frames, serialized once and written to many sockets.

Server-to-client frames are never masked and we negotiate no extensions
(permessage-deflate off), so one unfragmented text frame is a pure function of the
payload: the fan-out path builds it once per batch instead of once per connection.
"""

from __future__ import annotations

import struct

_TEXT_FIN = 0x81
# A final ping frame with no payload. Clients answer with a pong; the replica's
# keepalive sweep writes this one constant to every socket (serve/ws_gateway.py).
PING = bytes((0x89, 0))


def text_frame(payload: bytes) -> bytes:
    """One complete, final, unmasked text frame carrying ``payload`` (UTF-8)."""
    n = len(payload)
    if n < 126:
        return bytes((_TEXT_FIN, n)) + payload
    if n < 1 << 16:
        return struct.pack("!BBH", _TEXT_FIN, 126, n) + payload
    return struct.pack("!BBQ", _TEXT_FIN, 127, n) + payload
