"""``getbill_async.sync``: the blocking face, for code that does not use asyncio.

    from getbill_async.sync import GetBillClient

    with GetBillClient() as client:
        print(client.followups.list(limit=1).pagination.total)

``GetBillClient`` and ``Outbox`` have the names and arguments of the async ones, and their
methods: each blocks and returns what the async one returns; walks and ``create_many`` are
plain iterators; ``with`` opens and closes. They are the async classes run on one private
event loop per process, on a daemon thread (``_portal``); the methods are the async ones,
named once each (``_proxy``), so there is one implementation of the budget, the retries,
the reconciliation, the exports and the outbox. The errors are the async face's.
"""

from ._client import Debts, Followups, GetBillClient
from ._outbox import Outbox
from ._proxy import Batch, Walk

__all__ = ["Batch", "Debts", "Followups", "GetBillClient", "Outbox", "Walk"]
