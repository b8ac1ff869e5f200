"""``python -m hookline.cli``."""

import sys

from hookline.cli import main

sys.exit(main())
