"""`python -m station_client ...`: see station_client.cli."""

import sys

from station_client.cli import main

sys.exit(main())
