"""One budget for a fleet of processes, kept in Redis (the ``redis`` extra): ``RedisBudget``
(``_budget``), its Lua scripts (``_lua``), the connection to one node or a cluster
(``_conn``), and the local share it falls back to while Redis is away (``_fallback``).
"""

from ._budget import DEFAULT_KEY, RedisBudget, budget_from_url

__all__ = ["DEFAULT_KEY", "RedisBudget", "budget_from_url"]
