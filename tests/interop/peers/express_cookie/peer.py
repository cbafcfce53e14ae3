"""Express 5 + jsonwebtoken keeping the refresh token in its own HttpOnly cookie: the ``express``
peer's app with ``REFRESH_TOKEN_IN=cookie`` (see ``../express/peer.py``)."""

from __future__ import annotations

from tests.interop.peer import Peer
from tests.interop.peers.express.peer import express

PEER = Peer(name="express-cookie", start=express("cookie"))
