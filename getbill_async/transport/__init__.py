"""How a request travels: the request and its options (``_request``), where credentials
come from (``_credentials``), auth (``_auth``), retry
decisions (``_retry``), what an answer means (``_answers``), one try on the wire
(``_exchange``), the one pipeline that runs them (``_pipeline``), and the page walks built on
it (``_walks``; ``_overlap``: reads that overlap, to prove nothing was skipped).

Nothing here imports the client: code below the client sees it through ``Sender``, a small
Protocol that ``GetBillClient`` satisfies.
"""

from ._answers import Decodes
from ._auth import OAuthTokenSource, TokenSource, token_source
from ._credentials import ClientCredentials, check_token, resolve_credentials, token_url_beside
from ._overlap import OverlapWalk, back_read, next_read, reads_for, walk_overlapping
from ._pipeline import Pipeline
from ._request import (
    SENT,
    CallOptions,
    CallStats,
    Request,
    SentAwareRequest,
    SentRecord,
    default_max_wait,
    lane_of,
)
from ._retry import RetryPolicy
from ._sender import Sender
from ._walks import ItemWalk, KeyedPage, PageWalk, WalkStats, walk_pages
from ._wire import ItemEnvelope

__all__ = [
    "SENT",
    "back_read",
    "CallOptions",
    "CallStats",
    "ClientCredentials",
    "Decodes",
    "ItemEnvelope",
    "ItemWalk",
    "KeyedPage",
    "OAuthTokenSource",
    "OverlapWalk",
    "PageWalk",
    "Pipeline",
    "Request",
    "RetryPolicy",
    "Sender",
    "SentAwareRequest",
    "SentRecord",
    "TokenSource",
    "WalkStats",
    "check_token",
    "default_max_wait",
    "lane_of",
    "next_read",
    "reads_for",
    "resolve_credentials",
    "token_source",
    "token_url_beside",
    "walk_overlapping",
    "walk_pages",
]
