"""Channel gateway: the pay core's port to payment channels. The core hands a
:class:`ChannelRequest` to a :class:`ChannelPort` and settles on the
:class:`ChannelResult` that comes back (callback or active query); the HTTP client,
its circuit breakers and the request signing are in :mod:`.gateway`, :mod:`.client`
and :mod:`.signing`.
"""

from .port import ChannelPort, ChannelRequest, ChannelResult

__all__ = ["ChannelPort", "ChannelRequest", "ChannelResult"]
