"""`python -m pipelines ...`: every pipeline, headless."""

from .cli import main

raise SystemExit(main())
