"""Print, space-separated and sorted, the modules that ``import MODULE`` loads.

Usage: ``python imports.py MODULE``.  importkit's ``modules_loaded_by`` runs it in a fresh
interpreter: what a program imports is part of its start-up cost.  It imports nothing
itself before taking the snapshot (``__import__`` is a builtin).
"""

import sys

before = set(sys.modules)
__import__(sys.argv[1])
print(" ".join(sorted(set(sys.modules) - before)))
