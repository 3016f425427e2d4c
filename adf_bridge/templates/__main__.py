"""`python -m adf_bridge.templates`: see `adf_bridge.templates.cli`."""

import sys

from adf_bridge.templates.cli import main

sys.exit(main())
