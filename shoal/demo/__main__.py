"""`python -m shoal.demo`: the same tour as `shoal demo`."""

import sys

from shoal.demo.tour import main

sys.exit(main())
