"""The package version (one place, imported by the package and by what records provenance)."""

__version__ = "0.1.0"
