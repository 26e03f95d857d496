"""``python -m convoi.devstack.bench``: see :mod:`convoi.devstack.bench`."""

import sys

from convoi.devstack.bench import main

sys.exit(main())
