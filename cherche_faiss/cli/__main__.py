"""``python -m cherche_faiss.cli``: the ``cherche-faiss`` command."""

import sys

from . import main

sys.exit(main())
