"""What to ask the API: one module per resource (``followups``, ``debts``) and the media
downloads of followups (``_media``). Resources say *what* to ask; the transport says *how*."""

from .debts import Debts
from .followups import Followups, probe_list

__all__ = ["Debts", "Followups", "probe_list"]
