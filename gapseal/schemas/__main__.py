"""``python -m gapseal.schemas``: regenerate every published JSON Schema (``--check`` only compares)."""

import sys

from gapseal.schemas import main

sys.exit(main())
