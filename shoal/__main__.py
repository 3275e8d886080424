import sys

from shoal.cluster.cli import main

sys.exit(main())
