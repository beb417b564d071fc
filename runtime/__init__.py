"""Online: the edge runtime (LiteRT prefixes, hot swap, ZeroMQ client side) and the cloud daemon."""
