"""Step kinds: one module per kind (or family), each registering itself with `bot.steps.base.register`.

Importing this package imports every module in it, so a new kind needs no list to be kept in sync.
"""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    if _module.name not in ("base", "context"):
        importlib.import_module(f"{__name__}.{_module.name}")
