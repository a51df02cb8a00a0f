"""What one server accepts: the limits ``tacoglow serve`` sets (kept free of the web framework, so the
command line can read their defaults without importing it)."""
from __future__ import annotations

from dataclasses import dataclass

from ..config import ConfigError


@dataclass
class ServerLimits:
    """What one server accepts; each limit answers with a JSON error, never a hang."""

    max_input_chars: int = 4096    # OpenAI's limit for `input`; longer gets 413
    max_concurrent: int = 8        # requests synthesized at once (one sentence each per batch)
    max_queue: int = 32            # requests waiting for a slot; more get 503 + Retry-After
    request_timeout: float = 60.0  # seconds from arrival to the last byte; then 504 or a cut stream
    batch_wait: float = 0.01       # seconds to gather concurrent requests after an idle spell

    def check(self) -> None:
        """Raise ConfigError, naming the ``tacoglow serve`` options, for limits no server can keep."""
        if self.max_input_chars < 1 or self.max_concurrent < 1 or self.max_queue < 0:
            raise ConfigError("--max-input-chars and --max-concurrent must be at least 1, --max-queue at least 0")
        if self.request_timeout <= 0 or self.batch_wait < 0:
            raise ConfigError("--timeout must be positive and --batch-wait-ms at least 0")
