"""Defaults shared by every part; addresses live here and nowhere else."""

#: Where the cloud daemon binds and the edge connects unless told otherwise.
DEFAULT_ENDPOINT = "tcp://127.0.0.1:5555"
#: Environment variables that override the defaults on the command line.
ENV_ENDPOINT = "PARTNNER_CLOUD"
ENV_THREADS = "PARTNNER_THREADS"

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = "partnner-manifest"
MANIFEST_VERSION = 1

#: Wire protocol version carried in every header.
PROTOCOL_VERSION = 1
#: Largest message the daemon accepts (ZeroMQ's ZMQ_MAXMSGSIZE), bytes.
MAX_MESSAGE_BYTES = 256 * 1024 * 1024

#: Loopback hosts a daemon may bind without CURVE.
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")

#: The edge runtime's cloud deadline when the selector suggests none, and its bounds on a
#: selector's suggestion, seconds (the simulator uses the same).
DEADLINE_S = 1.0
MIN_DEADLINE_S = 0.02
MAX_DEADLINE_S = 10.0
#: After a failed request the runtime pings the cloud: each ping waits this long, the pings
#: going out after (first, largest) waits, doubling.
PROBE_TIMEOUT_S = 0.5
PROBE_BACKOFF_S = (0.05, 2.0)
