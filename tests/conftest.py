from __future__ import annotations

import os

# Tests never read the developer's environment by accident.
for name in list(os.environ):
    if name.startswith("TASKPORT_"):
        del os.environ[name]
