"""How a request travels: the request and its options (``_request``), auth (``_auth``), retry
decisions (``_retry``), what an answer means (``_answers``), one try on the wire
(``_exchange``), the one pipeline that runs them (``_pipeline``), and the page walks built on
it (``_walks``).

Nothing here imports the client: code below the client sees it through ``Sender``, a small
Protocol that ``GetBillClient`` satisfies.
"""

from ._answers import Decodes
from ._auth import ClientCredentials, OAuthTokenSource, TokenSource, check_token, token_source
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
    "CallOptions",
    "CallStats",
    "ClientCredentials",
    "Decodes",
    "ItemEnvelope",
    "ItemWalk",
    "KeyedPage",
    "OAuthTokenSource",
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
    "token_source",
    "walk_pages",
]
