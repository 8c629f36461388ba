"""``python -m gapseal.signing``: regenerate the published trust.yaml JSON Schema."""

import sys

from gapseal.signing.trust import main

sys.exit(main())
