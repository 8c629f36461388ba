"""``python -m gapseal.audit.schemas``: regenerate the published schemas."""

from __future__ import annotations

import sys

from gapseal.audit.schemas import main

sys.exit(main())
