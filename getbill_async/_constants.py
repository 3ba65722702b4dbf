"""Defaults in one place, so a reader finds every tunable number here."""

from __future__ import annotations

DEFAULT_BASE_URL = "https://getbill.io/external-api/v1"
DEFAULT_TOKEN_URL = "https://getbill.io/token"
DEFAULT_SCOPES = ("followups:read", "followups:write", "debts:read")

DEFAULT_TIMEOUT = 30.0
#: A page of 100 followups is ~75 KB; 16 MiB leaves room for any documented answer
#: while a runaway body (a proxy streaming garbage) cannot exhaust memory.
DEFAULT_MAX_RESPONSE_BYTES = 16 * 1024 * 1024

#: The server's documented limits per OAuth client and sliding window.
DEFAULT_READS = 1000
DEFAULT_WRITES = 500
DEFAULT_WINDOW = 3600.0

DEFAULT_PAGE_LIMIT = 100
MAX_PAGE_LIMIT = 100
#: Pages in flight (and held) ahead of the consumer; see _pagination.py for the reasoning.
DEFAULT_CONCURRENCY = 4
#: A walk remembers at least this many of the last ids it yielded (about 150 KB), so that a
#: burst of this many new followups during one pause (an hour's budget wait, say) cannot
#: slide an item already read back into the walk; beyond it the window grows with ``total``.
WALK_REMEMBERED_IDS = 2000

#: Refresh an OAuth token this long before it expires (capped at a tenth of its lifetime).
TOKEN_REFRESH_MARGIN = 60.0
#: A refresh that failed while the token is still valid is tried again this long after (at
#: most; sooner when the token has less than twice that left).
TOKEN_RETRY_LATER = 30.0
#: A token is not sent in its last seconds: the request must reach the server before it expires.
TOKEN_EXPIRY_SKEW = 5.0

USER_AGENT = "getbill-async/0.1.0"
LOGGER_NAME = "getbill_async"
