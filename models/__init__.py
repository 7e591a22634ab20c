"""Circuit definitions (TOML) shipped with neurocircuit; load them with ``neurocircuit.load_circuit``."""
