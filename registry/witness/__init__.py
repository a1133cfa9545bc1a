"""A C2SP tlog-witness for the trust registry's log (docs/registry.md, "Witness").

:mod:`registry.witness.app` serves ``add-checkpoint`` over :mod:`registry.witness.state`;
:mod:`registry.witness.settings` loads the key and the trusted logs; :mod:`registry.witness.cli`
is the ``civic-registry witness`` command. The protocol itself is pure, in :mod:`civic.witness`.
"""
