"""`make chaos`: the whole pipeline through the local platform under faults, proving nothing is lost."""
