"""The ``make demo`` runner: a whole three-ring rollout on the local platform, watched live."""
