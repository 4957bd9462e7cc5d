"""Packaging beyond what pyproject.toml can say: the shipped templates and runbooks as package data.

Templates and runbooks stay in the top-level `templates/` and `runbooks/` folders, one copy, where
people edit them. The wheel carries them as the packages `bot.templates` and `bot.runbooks`
(`package_dir` maps those names onto the folders), which `bot.config` finds through
`importlib.resources` when there is no checkout around it (`pip install .`, a wheel, a container).
pyproject.toml's `packages.find` cannot add packages that live outside `bot/`, hence this file;
every other setting is in pyproject.toml.
"""

from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["bot", "bot.*"]) + ["bot.templates", "bot.templates.slack", "bot.runbooks"],
    package_dir={"bot.templates": "templates", "bot.runbooks": "runbooks"},
    package_data={"bot.templates": ["slack/*.j2"], "bot.templates.slack": ["*.j2"],
                  "bot.runbooks": ["*.yaml", "*.json"]},
)
