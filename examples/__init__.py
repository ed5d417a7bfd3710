"""Example applications of MINT, outside the package: each a folder that `config.application` names by its
dotted path (`application: examples.toy_app`, the repository root on PYTHONPATH)."""
