"""``python -m policyrouter``: the ``policyrouter`` command line."""

import sys

from policyrouter.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
