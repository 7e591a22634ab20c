"""Simulation definitions (TOML) shipped with neurocircuit; run them with ``neurocircuit run NAME``."""
