"""Target boards: one record each in one registry, fit checks, bundle and flash."""
