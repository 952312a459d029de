"""`python -m pipelines ...`: every pipeline, headless."""

from pipelines.cli import main

raise SystemExit(main())
