"""Channel gateway: the pay core's port to payment channels."""

from .port import ChannelPort, ChannelRequest, ChannelResult

__all__ = ["ChannelPort", "ChannelRequest", "ChannelResult"]
