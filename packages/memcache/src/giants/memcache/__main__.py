"""``python -m giants.memcache serve|router ...`` (the same as ``giants memcache ...``)."""

import sys

from giants.memcache.cli import main

sys.exit(main())
