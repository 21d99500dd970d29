"""``python -m edgeser``: the same as the ``edgeser`` command."""

from .cli import main

raise SystemExit(main())
