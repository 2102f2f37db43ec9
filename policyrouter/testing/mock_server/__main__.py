"""``python -m policyrouter.testing.mock_server``: serve until interrupted."""

from policyrouter.testing.mock_server import main

raise SystemExit(main())
