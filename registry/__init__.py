"""Trust registry: a witnessed transparency log. Not built yet: see the Registry issue."""
