"""Adapters the services share: database engines and private configuration files.

Unlike :mod:`civic`, this package touches the outside world (SQL engines, the file system). It
holds only what the registry, witness, issuer and verifier would otherwise each repeat; each
service keeps its own tables, pragmas and settings.
"""
