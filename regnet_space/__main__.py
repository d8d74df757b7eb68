"""`python -m regnet_space`: the same command as `regnet-space`."""

import sys

from .cli import main

sys.exit(main())
