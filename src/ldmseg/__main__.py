"""`python -m ldmseg` (also `accelerate launch -m ldmseg ...`)."""

import sys

from ldmseg.cli import main

sys.exit(main())
