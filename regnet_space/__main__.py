"""`python -m regnet_space`: the same command as `regnet-space`."""

from ._startup import main

raise SystemExit(main())
