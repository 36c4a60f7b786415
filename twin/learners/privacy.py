"""The learner domain as the provider of its personal data (``compliance.providers``).

DSR export, erasure and retention reach the learner tables only through this provider, which
reads them through their descriptors (``tables.py``): the export decodes a row exactly as the
services' views do. A learner table added later is exported and erased once its descriptor is
in ``tables.LEARNER_TABLES``; what its export needs beyond its columns goes here.
"""

from __future__ import annotations

from compliance.providers import TableProvider


class LearnerDataProvider(TableProvider):
    """``digital_twin``'s learner tables (the registry's declarations for that database)."""
