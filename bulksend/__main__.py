"""``python -m bulksend``."""

from bulksend.cli import main

raise SystemExit(main())
