"""`make chaos`: the whole pipeline through the local stack under faults, proving nothing is lost."""
