"""What sr-serve allows a client to ask for, in one place (the CLI fills it from its options)."""

from __future__ import annotations

from dataclasses import dataclass

#: defaults sized for a Raspberry Pi 4/5: an upload of 64 MB, a 16 Mpx input (a 16-bit 4096x4096
#: image gives a 512 MB result on disk), two minutes per request
DEFAULT_MAX_UPLOAD_MB = 64
DEFAULT_MAX_PIXELS = 1 << 24
DEFAULT_QUEUE = 4
DEFAULT_TIME_LIMIT_S = 120.0
DEFAULT_RESULT_TTL_S = 600.0
#: finished results kept on disk, all together (the oldest go first beyond it)
DEFAULT_KEEP_MB = 2048
DEFAULT_SOURCE_FPS = 10.0
#: the live ROI is at most this many LR pixels a side (a 256x256 ROI is a 1024x1024 result)
MAX_LIVE_ROI = 256
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


@dataclass
class ServeConfig:
    """Limits and access rules of one sr-serve instance.

    ``token``: when set, every request but ``/healthz`` must carry it (``Authorization: Bearer``,
    the cookie the pages get from ``/?token=...``); sr-serve always sets one when it binds
    beyond the loopback interface. ``allowed_hosts``: the ``Host`` header values accepted (None:
    any); on 127.0.0.1 without a token, only the loopback names, so a web page elsewhere cannot
    reach the server through DNS rebinding.
    """

    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_MB << 20
    max_pixels: int = DEFAULT_MAX_PIXELS
    queue_size: int = DEFAULT_QUEUE
    workers: int = 1
    time_limit_s: float = DEFAULT_TIME_LIMIT_S
    result_ttl_s: float = DEFAULT_RESULT_TTL_S
    max_kept_bytes: int = DEFAULT_KEEP_MB << 20
    token: str | None = None
    allowed_hosts: tuple[str, ...] | None = None
    #: where results are kept (a private folder made under it, removed at shutdown); None: the system's
    temp_root: str | None = None
    live_fps: float = DEFAULT_SOURCE_FPS
    max_live_roi: int = MAX_LIVE_ROI

    def limits(self) -> dict[str, float | int]:
        """The limits a client may want to know (GET /v1/model shows them)."""
        return {
            "max_upload_bytes": self.max_upload_bytes,
            "max_pixels": self.max_pixels,
            "queue_size": self.queue_size,
            "workers": self.workers,
            "time_limit_s": self.time_limit_s,
            "result_ttl_s": self.result_ttl_s,
            "max_kept_bytes": self.max_kept_bytes,
            "max_live_roi": self.max_live_roi,
        }


def loopback_hosts(port: int) -> tuple[str, ...]:
    """The Host header values of a server on the loopback interface at ``port``."""
    names = ("127.0.0.1", "localhost", "[::1]")
    return tuple(n for name in names for n in (name, f"{name}:{port}"))
