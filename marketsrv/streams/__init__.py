"""Live market streams over WebSocket: frames, per-client outboxes, the publisher hub, the endpoints.

Data flows one way: the market's books and statistics -> `Hub.publish` (once per interval, each
update encoded once) -> each `Connection`'s conflating outbox -> its sender -> the socket.
"""

from marketsrv.streams.hub import Hub, HubSettings
from marketsrv.streams.session import Limits

__all__ = ["Hub", "HubSettings", "Limits"]
