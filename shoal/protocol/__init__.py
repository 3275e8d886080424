"""shoal's wire protocol: messages, framing and serialization. No I/O here."""

from shoal.protocol._framing import FrameDecoder, decode, encode
from shoal.protocol._messages import PROTOCOL_VERSION, Message, ProtocolError
from shoal.protocol._serialize import Serialized, dumps, loads

__all__ = [
    "PROTOCOL_VERSION",
    "FrameDecoder",
    "Message",
    "ProtocolError",
    "Serialized",
    "decode",
    "dumps",
    "encode",
    "loads",
]
