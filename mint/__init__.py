"""MINT: transfer a multimodal teacher's ranking knowledge into a unimodal LLM by preference optimization.

The package holds every step's logic; `Snakefile` and `rules/` only name files and call it.
Run the whole workflow on the embedded default: `make demo`.
"""

__version__ = "0.1.0"
