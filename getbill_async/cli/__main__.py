"""``python -m getbill_async.cli``: the ``getbill`` command."""

import sys

from ._main import main

sys.exit(main())
