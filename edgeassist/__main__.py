"""`python -m edgeassist` runs the command-line interface."""

from edgeassist.cli import main

raise SystemExit(main())
